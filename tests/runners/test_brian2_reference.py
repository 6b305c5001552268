"""Reference comparisons with Brian2 (data made by benchmarks/reference/, so no Brian2 needed here)."""
import json
from pathlib import Path

import numpy as np
import pytest

from neurodsl.runners.simulate import simulate
from neurodsl.spec import load_spec

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"


def brian_statistics(ds, transient_ms: float, fano_bin_ms: float) -> dict:
    """E/I rate, mean ISI CV and Fano exactly as defined in tests/data/brian2_*_stats.json."""
    dt = ds.attrs["dt_ms"]
    n_steps = ds.attrs["n_steps"]
    t0, fb = int(round(transient_ms / dt)), int(round(fano_bin_ms / dt))
    step, neuron = ds.spike_step.values.astype(np.int64), ds.spike_neuron.values.astype(np.int64)
    keep = step >= t0
    step, neuron = step[keep], neuron[keep]
    N = ds.sizes["neuron"]
    counts = np.bincount(neuron, minlength=N)
    n_bins = (n_steps - t0) // fb
    b = (step - t0) // fb
    binned = np.zeros((N, n_bins))
    np.add.at(binned, (neuron[b < n_bins], b[b < n_bins]), 1)
    order = np.lexsort((step, neuron))
    step, neuron = step[order], neuron[order]
    cv = np.full(N, np.nan)
    starts, stops = np.searchsorted(neuron, np.arange(N)), np.searchsorted(neuron, np.arange(N), side="right")
    for n in np.nonzero(counts >= 3)[0]:
        isi = np.diff(step[starts[n]:stops[n]]).astype(float)
        cv[n] = isi.std() / isi.mean()
    mean_c = binned.mean(1)
    fano = np.where(mean_c > 0, binned.var(1) / np.where(mean_c > 0, mean_c, 1), np.nan)
    window_s = (n_steps - t0) * dt * 1e-3
    out = {}
    for ei in ("E", "I"):
        sel = ds["ei"].values == ei
        out[f"rate_hz_{ei}"] = counts[sel].mean() / window_s
        out[f"cv_isi_{ei}"] = np.nanmean(cv[sel])
        out[f"fano_{ei}"] = np.nanmean(fano[sel])
    return out


@pytest.mark.parametrize("model", ["coba", "cuba"])
def test_statistics_match_brian2_over_seeds(model):
    ref = json.loads((DATA / f"brian2_{model}_stats.json").read_text())
    mean = {k: v["mean"] for k, v in ref["summary"].items()}
    ours = []
    for seed in ref["seeds"]:
        ds = simulate(load_spec(REPO / "spec" / f"{model}.yaml", [f"seed={seed}", f"duration={ref['duration_ms']} ms"]),
                      progress=False, write=False)
        ours.append(brian_statistics(ds, ref["transient_ms"], ref["fano_bin_ms"]))
    got = {k: float(np.mean([o[k] for o in ours])) for k in ours[0]}
    report = {k: (round(got[k], 3), round(mean[k], 3)) for k in got}
    print(f"{model} over seeds {ref['seeds']}: (neurodsl, Brian2) {report}")
    for ei in ("E", "I"):
        assert abs(got[f"rate_hz_{ei}"] / mean[f"rate_hz_{ei}"] - 1) <= 0.05, report
        assert abs(got[f"cv_isi_{ei}"] - mean[f"cv_isi_{ei}"]) <= 0.03, report
        assert abs(got[f"fano_{ei}"] / mean[f"fano_{ei}"] - 1) <= 0.10, report


def test_float64_spike_trains_equal_brian2_for_100_ms(tmp_path, x64):
    z = np.load(DATA / "brian2_coba_exact.npz")
    NE, N = int(z["NE"]), int(z["N"])
    pre = np.concatenate([z["syn_e_pre"], z["syn_i_pre"]]).astype(np.int64)
    post = np.concatenate([z["syn_e_post"], z["syn_i_post"]]).astype(np.int64)
    sets = ["precision=float64", "duration=100 ms", "outputs.rate_bin=100 ms"]
    for i, (a, b) in enumerate([("E", "E"), ("E", "I"), ("I", "E"), ("I", "I")]):
        m = ((pre < NE) == (a == "E")) & ((post < NE) == (b == "E"))
        f = tmp_path / f"{a}{b}.npz"
        np.savez(f, pre=pre[m] - (0 if a == "E" else NE), post=post[m] - (0 if b == "E" else NE))
        sets.append(f"projections[{i}].connectivity={{kind: file, file: {f}}}")
    for pop, sl in (("E", slice(0, NE)), ("I", slice(NE, N))):
        f = tmp_path / f"init_{pop}.npz"
        np.savez(f, V=z["v0_V"][sl] * 1e3, exc=z["ge0"][sl] * 10.0, inh=z["gi0"][sl] * 10.0)
        sets += [f"initial_state.{pop}.V={{file: {f}, key: V}}",
                 f"initial_state.{pop}.g.exc={{file: {f}, key: exc}}",
                 f"initial_state.{pop}.g.inh={{file: {f}, key: inh}}"]
    ds = simulate(load_spec(REPO / "spec" / "coba.yaml", sets), progress=False, write=False)
    ours = sorted(zip(ds.spike_step.values.tolist(), ds.spike_neuron.values.tolist()))
    ref = sorted(zip(z["spike_step"].tolist(), z["spike_i"].astype(int).tolist()))
    first_diff = next((i for i, (a, b) in enumerate(zip(ours, ref)) if a != b), None)
    assert len(ours) == len(ref) and first_diff is None, (
        f"{len(ours)} vs {len(ref)} spikes; first difference at {first_diff}: "
        f"{ours[first_diff] if first_diff is not None else ''} vs {ref[first_diff] if first_diff is not None else ''}")
