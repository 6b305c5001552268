"""Sparse spike recording and streamed writing (issue 12, a million neurons).

The reference is the dense path run_network had before: the compiled loop returns the whole
(steps, trials, neurons) raster and events and rates are computed from it with numpy.
"""
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from neurodsl.runners.simulate import configure_precision, run_network, simulate
from neurodsl.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
SMALL = ["duration=40 ms", "populations.E.size=400", "populations.I.size=100", "trials=2"]


def dense_reference(net, n_steps: int, bin_steps: int):
    """Events (sorted by step, trial, neuron) and rates from the dense raster of one compiled loop."""
    import brainstate
    import jax.numpy as jnp
    names = list(net.populations)

    def body(n):
        spikes = net.update(n)
        return jnp.concatenate([spikes[k] for k in names], axis=-1)

    @brainstate.transform.jit
    def run(steps):
        return brainstate.transform.for_loop(body, steps)

    spikes = np.asarray(run(jnp.arange(n_steps, dtype=jnp.int32)))  # (T, B, N)
    t, b, n = np.nonzero(spikes)
    n_bins = -(-n_steps // bin_steps)
    counts = np.zeros((spikes.shape[1], n_bins, spikes.shape[2]), np.int32)
    np.add.at(counts, (b, t // bin_steps, n), 1)
    widths = np.minimum(bin_steps, n_steps - np.arange(n_bins) * bin_steps) * net.dt * 1e-3
    return {"trial": b, "step": t, "neuron": n}, (counts / widths[None, :, None]).astype(np.float32)


@pytest.fixture(scope="module")
def small_net():
    configure_precision("float32")
    from neurodsl.compile import compile_network
    return compile_network(load_spec(REPO / "spec" / "coba.yaml", SMALL).spec)


def _same(res, ref_events, ref_rate):
    for k in ("trial", "step", "neuron"):
        np.testing.assert_array_equal(res.events[k], ref_events[k], err_msg=k)
    assert res.rate.dtype == np.float32
    np.testing.assert_array_equal(res.rate, ref_rate)


# 400 steps, bins of 30 steps (the last one partial), chunks of 120 steps
@pytest.mark.parametrize("record", [{}, {"capacity": 4, "step_capacity": 1},
                                    {"capacity": 4, "step_capacity": 1, "max_entries": 40}],
                         ids=["default", "overflow", "overflow-shortened"])
def test_sparse_recording_equals_dense_raster(small_net, record):
    small_net.init_state(2, 0)
    ref_events, ref_rate = dense_reference(small_net, 400, 30)
    assert len(ref_events["step"]) > 100
    small_net.init_state(2, 0)
    res = run_network(small_net, 400, 30, 120, progress=False, **record)
    _same(res, ref_events, ref_rate)
    assert res.n_spikes == len(ref_events["step"])
    assert (res.reruns > 0) == bool(record)


def test_sources_and_voltage_recorded_with_tiny_buffers():
    """Poisson sources on their own columns; voltages dense; an overflowing buffer changes nothing."""
    from neurodsl.compile import compile_network
    spec = load_spec(REPO / "spec" / "three_pop.yaml", ["duration=20 ms"]).spec
    configure_precision(spec.precision)
    net = compile_network(spec)
    out = []
    for record in ({}, {"capacity": 2, "step_capacity": 1}):
        net.init_state(1, 3)
        out.append(run_network(net, 200, 20, 70, record_voltage=True, progress=False, record_sources=True,
                               **record))
    a, b = out
    assert b.reruns > 0
    for k in a.events:
        np.testing.assert_array_equal(a.events[k], b.events[k])
    np.testing.assert_array_equal(a.voltage, b.voltage)
    assert a.voltage.shape == (1, 200, net.n_neurons)
    assert len(a.source_events["background"]["step"]) > 0
    for src in a.source_events:
        for k in ("trial", "step", "neuron"):
            np.testing.assert_array_equal(a.source_events[src][k], b.source_events[src][k])


def test_streamed_file_equals_in_memory_dataset(tmp_path):
    loaded = load_spec(REPO / "spec" / "coba.yaml", SMALL + ["outputs.chunk=12 ms", "outputs.rate_bin=5 ms",
                                                             "outputs.record_voltage=true", "engine=xla"])
    mem = simulate(loaded, progress=False, write=False)
    streamed = simulate(loaded, tmp_path, progress=False, capacity=8, step_capacity=2)
    with xr.open_dataset(tmp_path / "simulation.nc") as back:
        varying = ("created", "wall_time_s", "loop_time_s", "recording_reruns")
        assert set(back.attrs) == set(mem.attrs)
        for k in varying:
            back.attrs.pop(k), mem.attrs.pop(k)
        xr.testing.assert_identical(back, mem)
        # and the same content as writing the in-memory Dataset the ordinary way
        from neurodsl.io.dataset import write_netcdf
        with xr.open_dataset(write_netcdf(mem, tmp_path / "whole.nc")) as whole:
            for k in varying:
                whole.attrs.pop(k, None)
            xr.testing.assert_identical(back, whole)
            for v in back.variables:
                assert back[v].dtype == whole[v].dtype, v
    assert streamed.sizes["spike"] == mem.sizes["spike"] > 0
    assert not list(tmp_path.glob("*.tmp*")) and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
