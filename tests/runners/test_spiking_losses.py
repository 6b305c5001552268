"""Parity of the spiking training losses with their definitions in neurodsl.analysis."""
import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
from jax import enable_x64  # noqa: E402

from neurodsl.analysis.stats import van_rossum_distance  # noqa: E402
from neurodsl.runners import spiking_losses as SL  # noqa: E402

# The loss sums the filtered difference on the step grid (left Riemann sum of an integral
# the analysis evaluates in closed form): the gap is O(dt / tau_rise).
RIEMANN_RTOL = {0.1: 2e-4, 0.5: 2e-3}  # measured 5e-6 and 8e-4


def _context(n, dt, rise=10.0, decay=100.0):
    return SL.LossContext(type_idx=np.zeros(n, int), V_th=np.full(n, -50.0), dt=dt,
                          rate_target=np.full(n, 5.0), type_rate_target=np.array([5.0, np.nan]),
                          vr_rise=rise, vr_decay=decay, has_teacher=True)


def _loss_and_analysis(dt, steps=3000, batch=2, n=3, seed=0, rise=10.0, decay=100.0):
    rng = np.random.default_rng(seed)
    a = rng.random((steps, batch, n)) < 20.0 * dt * 1e-3   # ~20 Hz student
    b = rng.random((steps, batch, n)) < 20.0 * dt * 1e-3   # ~20 Hz teacher
    ctx = _context(n, dt, rise, decay)
    observe = SL.make_observer(ctx)
    obs = SL.init_obs(batch, n, jnp.float64)

    def body(o, x):
        s, t = x
        o, _ = observe(o, {"spikes": s, "V": jnp.zeros_like(s)}, t)
        return o, None

    obs, _ = jax.lax.scan(body, obs, (jnp.asarray(a, jnp.float64), jnp.asarray(b, jnp.float64)))
    secs = steps * dt * 1e-3
    loss = float(SL.van_rossum_loss(ctx, obs, None)) * secs
    ref = np.mean([van_rossum_distance(np.nonzero(a[:, i, j])[0] * dt, np.nonzero(b[:, i, j])[0] * dt,
                                       dt_ms=dt, t_max=steps * dt, kernel="double_exp", tau_rise_ms=rise,
                                       tau_decay_ms=decay, include_tail=False) ** 2
                   for i in range(batch) for j in range(n)])
    return loss, ref


@pytest.mark.parametrize("dt", sorted(RIEMANN_RTOL))
def test_van_rossum_loss_is_the_analysis_distance(dt):
    with enable_x64():  # scoped: a global switch would leak into later tests' float32 runs
        loss, ref = _loss_and_analysis(dt, steps=int(300 / dt))
    assert ref > 0.1
    assert loss == pytest.approx(ref, rel=RIEMANN_RTOL[dt])


def test_van_rossum_loss_one_unmatched_spike():
    """One unmatched spike: D^2 -> 1/2 (analysis: D = 1/sqrt(2)) once the kernel has decayed."""
    with enable_x64():
        d2 = _one_unmatched_spike()
    assert d2 == pytest.approx(0.5, rel=RIEMANN_RTOL[0.1])
    assert van_rossum_distance([1.0], [], kernel="double_exp") ** 2 == pytest.approx(0.5)


def _one_unmatched_spike():
    dt, steps = 0.1, 20000   # 2 s >> 100 ms decay
    ctx = _context(1, dt)
    observe = SL.make_observer(ctx)
    obs = SL.init_obs(1, 1, jnp.float64)
    s = np.zeros((steps, 1, 1)); s[10] = 1.0

    def body(o, x):
        o, _ = observe(o, {"spikes": x, "V": jnp.zeros_like(x)}, jnp.zeros_like(x))
        return o, None

    obs, _ = jax.lax.scan(body, obs, jnp.asarray(s))
    return float(SL.van_rossum_loss(ctx, obs, None)) * steps * dt * 1e-3
