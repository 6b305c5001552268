#!/usr/bin/env python
"""Brian2 reference implementation of the Vogels-Abbott / Brette et al. 2007
COBA benchmark (benchmark 1: LIF neurons with exponential conductances).

Source of the model: Brian's own benchmark script ``examples/misc/COBA.py``
(Brian 1, R. Brette, Dec 2007; the script used for Brette et al. 2007,
J Comput Neurosci 23:349-398), ported 1:1 to Brian2 syntax.  The only
changes w.r.t. Brian 1 are syntactic: Brian 1 shifted v by +60 mV (so El=0);
here v is the absolute membrane potential and El=-60 mV, which is the same
model.  Conductances are held in units of the leak conductance gl = 10 nS
(dimensionless ``: 1`` state variables), exactly as in Brian's script:

    dv/dt  = (ge*(Ee-v) + gi*(Ei-v) + (El-v))/taum : volt (unless refractory)
    dge/dt = -ge/taue : 1      # ge in units of gl
    dgi/dt = -gi/taui : 1      # gi in units of gl

    threshold 'v > Vt', reset 'v = Vr', refractory 5 ms
    E->all: Synapses(P[:3200], P, on_pre='ge += we'), connect(p=0.02)
    I->all: Synapses(P[3200:], P, on_pre='gi += wi'), connect(p=0.02)
    we = 6 nS / gl = 0.6,   wi = 67 nS / gl = 6.7     (leak units)
    v0  = El + (randn()*5 - 5) mV
    ge0 = randn()*1.5 + 4        (leak units, i.e. (randn()*1.5+4)*10 nS)
    gi0 = randn()*12 + 20        (leak units, i.e. (randn()*12+20)*10 nS)

Connectivity: independent Bernoulli(p) for every (pre, post) pair of the
source subgroup x the full group.  Self-connections (autapses) are NOT
excluded -- neither Brian 1's ``Connection(..., sparseness=0.02)`` nor
Brian2's ``connect(p=0.02)`` exclude them.  No synaptic delay (spikes act in
the same time step in which they are emitted, see README.md).  No external
input.  dt = 0.1 ms.

Modes (see README.md in this directory for the statistic definitions):

  --stats  --seeds 0 1 2 3 4 --duration 1s   -> tests/data/brian2_coba_stats.json
  --exact  --duration 100ms                  -> tests/data/brian2_coba_exact.npz
  --timing --sizes 4000 16000 --duration 1s  -> JSON line per size on stdout
  --print-code                               -> prints Brian2's generated code

Requires the venv described in README.md (brian2 2.9.0, numpy < 2.4).
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
DATA = os.path.join(REPO, "tests", "data")

# --------------------------------------------------------------------------
# Statistic definitions (shared with brian2_cuba.py; keep in sync with README)
# --------------------------------------------------------------------------
STAT_DEFINITIONS = {
    "spike_time": (
        "A spike detected by the threshold in time step n (the step that "
        "advances the state from t=n*dt to t=(n+1)*dt) is stored as the "
        "integer step n; Brian2 reports its time as t = n*dt."),
    "window": (
        "All statistics use only spikes with transient_steps <= n < "
        "duration_steps, i.e. the half-open window [transient, duration). "
        "The window length T = (duration_steps - transient_steps)*dt."),
    "rate_hz": (
        "Mean over ALL neurons of the population (silent ones included) of "
        "count_in_window / T[s]. Reported separately for E (neurons "
        "0..NE-1) and I (neurons NE..N-1)."),
    "cv_isi": (
        "Per neuron with >= 3 spikes in the window (i.e. >= 2 ISIs): "
        "ISIs = diff of its spike steps in the window (in dt units, unit "
        "cancels); CV = std(ISI, ddof=0) / mean(ISI). cv_isi_* is the "
        "unweighted mean of these per-neuron CVs over the qualifying "
        "neurons of the population (NaN if none); n_cv_* is the number of "
        "qualifying neurons."),
    "fano": (
        "Window split into consecutive non-overlapping bins of "
        "fano_bin_steps steps starting at transient_steps (number of bins "
        "= floor(window_steps / fano_bin_steps); a trailing partial bin is "
        "dropped). Per neuron: spike counts per bin c_k; "
        "F = var(c, ddof=0) / mean(c). fano_* = unweighted mean of F over "
        "the neurons of the population whose mean(c) > 0; n_fano_* is "
        "the number of such neurons."),
    "pop_fano": (
        "Same bins; population count C_k = sum over the neurons of the "
        "population of their counts in bin k; pop_fano_* = var(C, ddof=0) "
        "/ mean(C) (NaN if mean is 0)."),
    "across_seeds": (
        "summary.<stat>.mean / .std = numpy mean and std (ddof=1) of the "
        "per-seed values over seeds (NaN per-seed values excluded)."),
}


def spike_statistics(spike_i, spike_step, N, NE, transient_steps,
                     duration_steps, fano_bin_steps):
    """Compute the statistics documented in STAT_DEFINITIONS.

    spike_i: neuron indices (0..N-1), spike_step: integer time steps.
    Pure numpy; neurodsl's tests can copy this function verbatim.
    """
    spike_i = np.asarray(spike_i, dtype=np.int64)
    spike_step = np.asarray(spike_step, dtype=np.int64)
    m = (spike_step >= transient_steps) & (spike_step < duration_steps)
    si, ss = spike_i[m], spike_step[m]
    window_steps = duration_steps - transient_steps
    order = np.lexsort((ss, si))  # sort by neuron, then time
    si, ss = si[order], ss[order]
    counts = np.bincount(si, minlength=N)
    n_bins = window_steps // fano_bin_steps
    b = (ss - transient_steps) // fano_bin_steps
    keep = b < n_bins
    binned = np.zeros((N, n_bins), dtype=np.int64)
    np.add.at(binned, (si[keep], b[keep]), 1)
    # CV of ISI per neuron
    cv = np.full(N, np.nan)
    starts = np.searchsorted(si, np.arange(N), side="left")
    stops = np.searchsorted(si, np.arange(N), side="right")
    for n in np.nonzero(counts >= 3)[0]:
        isi = np.diff(ss[starts[n]:stops[n]]).astype(np.float64)
        cv[n] = isi.std() / isi.mean()
    mean_c = binned.mean(axis=1)
    var_c = binned.var(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        fano = np.where(mean_c > 0, var_c / mean_c, np.nan)
    out = {}
    T = window_steps  # in steps; converted below
    for name, sl in (("E", slice(0, NE)), ("I", slice(NE, N)),
                     ("all", slice(0, N))):
        out["rate_hz_" + name] = None  # filled by caller (needs dt)
        out["_count_" + name] = int(counts[sl].sum())
        out["_nneurons_" + name] = int(counts[sl].size)
        c = cv[sl]
        out["n_cv_" + name] = int(np.isfinite(c).sum())
        out["cv_isi_" + name] = (float(np.nanmean(c)) if np.isfinite(c).any()
                                 else float("nan"))
        f = fano[sl]
        out["n_fano_" + name] = int(np.isfinite(f).sum())
        out["fano_" + name] = (float(np.nanmean(f)) if np.isfinite(f).any()
                               else float("nan"))
        C = binned[sl].sum(axis=0)
        out["pop_fano_" + name] = (float(C.var() / C.mean()) if C.mean() > 0
                                   else float("nan"))
        out["silent_fraction_" + name] = float((counts[sl] == 0).mean())
    out["_window_steps"] = int(T)
    out["n_fano_bins"] = int(n_bins)
    return out


def finalize_rates(st, dt_s):
    T = st.pop("_window_steps") * dt_s
    for name in ("E", "I", "all"):
        cnt = st.pop("_count_" + name)
        nn = st.pop("_nneurons_" + name)
        st["rate_hz_" + name] = cnt / nn / T
        st["spike_count_" + name] = cnt
    st["window_s"] = T
    return st


def summarize(per_seed, keys):
    summary = {}
    for k in keys:
        vals = np.array([r[k] for r in per_seed], dtype=float)
        vals = vals[np.isfinite(vals)]
        summary[k] = {
            "mean": float(vals.mean()) if vals.size else float("nan"),
            "std": float(vals.std(ddof=1)) if vals.size > 1 else float("nan"),
            "n": int(vals.size),
        }
    return summary


STAT_KEYS = ["rate_hz_E", "rate_hz_I", "rate_hz_all", "cv_isi_E", "cv_isi_I",
             "cv_isi_all", "fano_E", "fano_I", "fano_all", "pop_fano_E",
             "pop_fano_I", "pop_fano_all", "silent_fraction_E",
             "silent_fraction_I", "n_cv_E", "n_cv_I", "runtime_s"]


def parse_time_ms(s):
    """'1s' -> 1000.0, '100ms' -> 100.0, '250' -> 250.0 (ms)."""
    s = s.strip()
    if s.endswith("ms"):
        return float(s[:-2])
    if s.endswith("s"):
        return float(s[:-1]) * 1000.0
    return float(s)


def machine_info():
    import brian2
    return {
        "python": sys.version.split()[0],
        "brian2": brian2.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "date": datetime.date.today().isoformat(),
    }


# --------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------
def coba_parameters():
    """Numerical parameters (Brian2 Quantities) exactly as used."""
    from brian2 import ms, mV, nS
    gl = 10 * nS
    return dict(
        taum=20 * ms, taue=5 * ms, taui=10 * ms,
        Vt=-50 * mV, Vr=-60 * mV, El=-60 * mV,
        Ee=0 * mV, Ei=-80 * mV,
        gl=gl,
        # synaptic weights in units of gl: 6 nS / 10 nS and 67 nS / 10 nS
        we=0.6, wi=6.7,
        refractory=5 * ms,
    )


COBA_EQS = """
dv/dt  = (ge*(Ee-v) + gi*(Ei-v) + (El-v))/taum : volt (unless refractory)
dge/dt = -ge/taue : 1
dgi/dt = -gi/taui : 1
"""


def build_coba(N=4000, NE=None, p=0.02, method="exponential_euler",
               seed_value=0, record_states=None, dt_ms=0.1):
    """Create the COBA network in the current Brian2 scope.

    Returns dict of objects.  Must be called after brian2 target / device
    preferences are set.  Random numbers: brian2.seed(seed_value) is called
    first, then (in this order) E synapses, I synapses, v, ge, gi.
    """
    from brian2 import (NeuronGroup, Synapses, SpikeMonitor, StateMonitor,
                        defaultclock, ms, seed)
    if NE is None:
        NE = int(0.8 * N)
    defaultclock.dt = dt_ms * ms
    seed(seed_value)
    prm = coba_parameters()
    ns = {k: v for k, v in prm.items() if k != "refractory"}
    P = NeuronGroup(N, COBA_EQS, threshold="v > Vt", reset="v = Vr",
                    refractory=prm["refractory"], method=method,
                    namespace=ns, name="P")
    Pe = P[:NE]
    Pi = P[NE:]
    Ce = Synapses(Pe, P, on_pre="ge += we", namespace=ns, name="Ce")
    Ci = Synapses(Pi, P, on_pre="gi += wi", namespace=ns, name="Ci")
    Ce.connect(p=p)
    Ci.connect(p=p)
    P.v = "El + (randn()*5 - 5)*mV"
    P.ge = "randn()*1.5 + 4"
    P.gi = "randn()*12 + 20"
    sm = SpikeMonitor(P, name="spikes")
    objs = dict(P=P, Ce=Ce, Ci=Ci, spikes=sm, NE=NE, N=N)
    if record_states is not None:
        objs["states"] = StateMonitor(P, ["v", "ge", "gi"],
                                      record=record_states, name="states")
    return objs


def make_network(objs):
    """Network of all Brian objects in the dict returned by build_*()."""
    from brian2 import Network, BrianObject
    return Network(*[o for o in objs.values() if isinstance(o, BrianObject)])


def set_target(target):
    from brian2 import prefs
    prefs.codegen.target = target
    prefs.core.default_float_dtype = np.float64


def spikes_as_steps(sm, dt_s):
    t = np.asarray(sm.t_[:], dtype=np.float64)
    steps = np.rint(t / dt_s).astype(np.int64)
    # sanity: times are exactly n*dt (Brian2: t = timestep*dt)
    assert np.all(steps * dt_s == t), "spike times are not exact multiples of dt"
    return np.asarray(sm.i[:], dtype=np.int64), steps


# --------------------------------------------------------------------------
# Modes
# --------------------------------------------------------------------------
def run_stats(args, model="coba", build=None, out_json=None, params=None,
              description=None):
    import brian2
    from brian2 import start_scope, ms
    build = build or build_coba
    dur_ms = parse_time_ms(args.duration)
    trans_ms = parse_time_ms(args.transient)
    dt_ms = 0.1
    dt_s = dt_ms * 1e-3
    duration_steps = int(round(dur_ms / dt_ms))
    transient_steps = int(round(trans_ms / dt_ms))
    fano_bin_steps = int(round(parse_time_ms(args.fano_bin) / dt_ms))
    set_target(args.target)
    per_seed = []
    for s in args.seeds:
        start_scope()
        objs = build(method=args.method, seed_value=s, dt_ms=dt_ms)
        net = make_network(objs)
        t0 = time.perf_counter()
        net.run(dur_ms * ms)
        runtime = time.perf_counter() - t0
        si, ss = spikes_as_steps(objs["spikes"], dt_s)
        st = spike_statistics(si, ss, objs["N"], objs["NE"], transient_steps,
                              duration_steps, fano_bin_steps)
        st = finalize_rates(st, dt_s)
        st["seed"] = int(s)
        st["runtime_s"] = runtime
        st["n_synapses_E"] = int(len(objs["Ce"]))
        st["n_synapses_I"] = int(len(objs["Ci"]))
        # rate over the full [0, duration) for information only
        st["rate_hz_E_full_window"] = float(
            np.sum(si < objs["NE"]) / objs["NE"] / (duration_steps * dt_s))
        st["rate_hz_I_full_window"] = float(
            np.sum(si >= objs["NE"]) / (objs["N"] - objs["NE"])
            / (duration_steps * dt_s))
        per_seed.append(st)
        print(json.dumps({k: st[k] for k in ["seed", "runtime_s", "rate_hz_E",
                                               "rate_hz_I", "cv_isi_E",
                                               "cv_isi_I", "fano_E", "fano_I"]}),
              flush=True)
    result = {
        "model": model,
        "description": description if description is not None else __doc__,
        "simulator": "brian2 %s, codegen target %s, float64" % (
            brian2.__version__, args.target),
        "method": args.method,
        "dt_ms": dt_ms,
        "duration_ms": dur_ms,
        "duration_steps": duration_steps,
        "transient_ms": trans_ms,
        "transient_steps": transient_steps,
        "fano_bin_ms": fano_bin_steps * dt_ms,
        "fano_bin_steps": fano_bin_steps,
        "seeds": list(args.seeds),
        "runtime_definition": (
            "wall-clock seconds (time.perf_counter) of Network.run(duration) "
            "in runtime mode (includes code generation / compilation on the "
            "first seed if the cache is cold, after that cached)."),
        "parameters": params if params is not None else coba_param_dict(),
        "definitions": STAT_DEFINITIONS,
        "per_seed": per_seed,
        "summary": summarize(per_seed, STAT_KEYS),
        "machine": machine_info(),
        "generated_by": "benchmarks/reference/%s %s" % (
            os.path.basename(sys.argv[0]), " ".join(sys.argv[1:])),
    }
    os.makedirs(os.path.dirname(out_json), exist_ok=True)
    with open(out_json, "w") as f:
        json.dump(result, f, indent=1, sort_keys=False)
    print("wrote", out_json)
    return result


def coba_param_dict():
    return {
        "N": 4000, "NE": 3200, "NI": 800, "p_connect": 0.02,
        "autapses": "allowed (not excluded)",
        "taum_ms": 20.0, "taue_ms": 5.0, "taui_ms": 10.0,
        "Vt_mV": -50.0, "Vr_mV": -60.0, "El_mV": -60.0,
        "Ee_mV": 0.0, "Ei_mV": -80.0, "gl_nS": 10.0,
        "we_nS": 6.0, "wi_nS": 67.0,
        "we_leak_units": 0.6, "wi_leak_units": 6.7,
        "refractory_ms": 5.0,
        "refractory_semantics": "v is frozen ('unless refractory'), ge/gi keep "
                                "decaying; threshold is 'v > Vt and "
                                "not_refractory'",
        "threshold": "v > Vt", "reset": "v = Vr",
        "synaptic_delay_ms": 0.0,
        "external_input": "none",
        "equations": COBA_EQS.strip(),
        "conductance_units": "ge, gi dimensionless, in units of gl = 10 nS",
        "init": {"v": "El + (randn()*5 - 5) mV",
                 "ge": "randn()*1.5 + 4   [leak units] (= (randn()*1.5+4)*10 nS)",
                 "gi": "randn()*12 + 20   [leak units] (= (randn()*12+20)*10 nS)"},
        "source": "Brian 1 examples/misc/COBA.py (Brette et al. 2007 benchmark 1), "
                  "ported to Brian2",
    }


def run_exact(args):
    import brian2
    from brian2 import start_scope, ms
    dur_ms = parse_time_ms(args.duration)
    dt_ms = 0.1
    dt_s = dt_ms * 1e-3
    set_target(args.target)
    start_scope()
    rec = np.array([0, 1, 2, 3, 4, 3200, 3201, 3202], dtype=np.int64)
    objs = build_coba(method=args.method, seed_value=args.seed, dt_ms=dt_ms,
                      record_states=rec)
    P = objs["P"]
    v0 = np.array(P.v_[:], dtype=np.float64)
    ge0 = np.array(P.ge_[:], dtype=np.float64)
    gi0 = np.array(P.gi_[:], dtype=np.float64)
    NE = objs["NE"]
    e_pre = np.asarray(objs["Ce"].i[:], dtype=np.int64)           # global
    e_post = np.asarray(objs["Ce"].j[:], dtype=np.int64)
    i_pre = np.asarray(objs["Ci"].i[:], dtype=np.int64) + NE       # global
    i_post = np.asarray(objs["Ci"].j[:], dtype=np.int64)
    net = make_network(objs)
    t0 = time.perf_counter()
    net.run(dur_ms * ms)
    runtime = time.perf_counter() - t0
    si, ss = spikes_as_steps(objs["spikes"], dt_s)
    st = objs["states"]
    prm = coba_parameters()
    consts = {k: float(v) for k, v in prm.items()}
    info = f"""Brian2 {brian2.__version__} reference run of the COBA benchmark (see
benchmarks/reference/brian2_coba.py and README.md there).
codegen target = {args.target}, float64, method = {args.method}, seed = {args.seed},
dt = {dt_ms} ms, duration = {dur_ms} ms = {int(round(dur_ms/dt_ms))} steps.
Units: v0_V is in VOLT (exact float64 values Brian2 used; Brian2 integrates v in
volt), v0_mV = v0_V*1000 (convenience, not bit-exact).  ge0, gi0 are
dimensionless conductances in units of the leak conductance gl = 10 nS (this is
how the equations hold them).  const_* arrays hold the exact float64 SI values
of the constants Brian2 used (seconds, volt; we/wi in leak units).
Connectivity: syn_e_pre/syn_e_post (E->all, pre in 0..{NE-1}) and
syn_i_pre/syn_i_post (I->all, pre in {NE}..{objs['N']-1}), GLOBAL neuron
indices, in Brian2's synapse order (sorted by pre, then post ascending).  This
order is the order in which 'ge += we' / 'gi += wi' are applied sequentially
within one time step (see README: float additions are NOT combined).
Autapses are allowed.
Spikes: spike_i (neuron) and spike_step (integer n): the spike was detected by
the threshold in step n, Brian2 time t = n*dt; spikes sorted by (step, neuron).
trace_*: StateMonitor(when='start') of neurons rec_idx: trace_v_V[k, n] is v
(volt) at the START of step n (= after step n-1 incl. reset/synaptic input), so
trace_*[:, 0] are the initial values.  final_v_V/final_ge/final_gi: state of
all neurons after the last step.
"""
    out = args.out or os.path.join(DATA, "brian2_coba_exact.npz")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    order = np.lexsort((si, ss))
    np.savez_compressed(
        out,
        info=np.array(info),
        dt_ms=np.float64(dt_ms), dt_s=np.float64(dt_s),
        duration_steps=np.int32(int(round(dur_ms / dt_ms))),
        method=np.array(args.method), target=np.array(args.target),
        seed=np.int32(args.seed), N=np.int32(objs["N"]), NE=np.int32(NE),
        syn_e_pre=e_pre.astype(np.int16), syn_e_post=e_post.astype(np.int16),
        syn_i_pre=i_pre.astype(np.int16), syn_i_post=i_post.astype(np.int16),
        v0_V=v0, v0_mV=v0 * 1000.0, ge0=ge0, gi0=gi0,
        spike_i=si[order].astype(np.int16),
        spike_step=ss[order].astype(np.int32),
        rec_idx=rec.astype(np.int16),
        trace_v_V=np.asarray(st.v_[:], dtype=np.float64),
        trace_ge=np.asarray(st.ge_[:], dtype=np.float64),
        trace_gi=np.asarray(st.gi_[:], dtype=np.float64),
        final_v_V=np.array(P.v_[:], dtype=np.float64),
        final_ge=np.array(P.ge_[:], dtype=np.float64),
        final_gi=np.array(P.gi_[:], dtype=np.float64),
        **{"const_" + k: np.float64(v) for k, v in consts.items()},
    )
    T = dur_ms * 1e-3
    summary = {
        "out": out, "runtime_s": runtime, "n_spikes": int(si.size),
        "rate_E_hz": float(np.sum(si < NE) / NE / T),
        "rate_I_hz": float(np.sum(si >= NE) / (objs["N"] - NE) / T),
        "n_syn_E": int(e_pre.size), "n_syn_I": int(i_pre.size),
        "file_bytes": os.path.getsize(out),
    }
    print(json.dumps(summary))
    return summary


def replay_coba_numpy(d, method="exponential_euler"):
    """Brian-free re-implementation of Brian2's per-step algorithm (numpy
    target, see README.md), driven by the contents of brian2_coba_exact.npz.

    Every floating point operation is written in exactly the order of
    Brian2's generated numpy code (loop-invariant constants ``_lio_*``
    included), so the result is bit-identical to Brian2's numpy target.
    Returns (spike_i, spike_step, trace_v, trace_ge, trace_gi, v, ge, gi).
    """
    c = {k[len("const_"):]: float(d[k]) for k in d.files if k.startswith("const_")}
    dt = float(d["dt_s"])
    taum, taue, taui = c["taum"], c["taue"], c["taui"]
    Ee, Ei, El, Vt, Vr = c["Ee"], c["Ei"], c["El"], c["Vt"], c["Vr"]
    we, wi, ref = c["we"], c["wi"], c["refractory"]
    N, NE = int(d["N"]), int(d["NE"])
    steps = int(d["duration_steps"])
    rec = d["rec_idx"].astype(np.int64)

    def timestep(t, dt_):  # brian2.core.functions.timestep
        return np.array((t + 1e-3 * dt_) / dt_, dtype=np.int64)

    # outgoing synapses per presynaptic neuron, in Brian's synapse order
    def csr(pre, post, n_pre_total):
        pre = pre.astype(np.int64)
        post = post.astype(np.int64)
        order = np.argsort(pre, kind="stable")  # already sorted; keep order
        starts = np.searchsorted(pre[order], np.arange(n_pre_total + 1))
        return post[order], starts

    e_post, e_start = csr(d["syn_e_pre"], d["syn_e_post"], N)
    i_post, i_start = csr(d["syn_i_pre"], d["syn_i_post"], N)

    v = d["v0_V"].astype(np.float64).copy()
    ge = d["ge0"].astype(np.float64).copy()
    gi = d["gi0"].astype(np.float64).copy()
    lastspike = np.full(N, -1e4)
    not_refractory = np.ones(N, dtype=bool)
    # loop-invariant constants exactly as in Brian2's generated code
    _lio_1 = timestep(ref, dt)
    if method == "exponential_euler":
        _lio_2 = np.exp((-dt) / taue)
        _lio_3 = np.exp((-dt) / taui)
        _lio_4 = Ee / taum
        _lio_5 = Ei / taum
        _lio_6 = El / taum
        _lio_7 = 1.0 / taum
        _lio_8 = 0.0 - _lio_7
    elif method == "euler":
        _lio_2 = (-dt) / taue
        _lio_3 = (-dt) / taui
        _lio_4 = dt / taum
    else:
        raise ValueError(method)
    tv = np.empty((rec.size, steps))
    tge = np.empty((rec.size, steps))
    tgi = np.empty((rec.size, steps))
    out_i, out_n = [], []
    for n in range(steps):
        t = n * dt
        # StateMonitor (when='start')
        tv[:, n], tge[:, n], tgi[:, n] = v[rec], ge[rec], gi[rec]
        # ---- groups: state update
        not_refractory = timestep(t - lastspike, dt) >= _lio_1
        if method == "exponential_euler":
            _ge = _lio_2 * ge
            _gi = _lio_3 * gi
            _BA_v = np.where(not_refractory,
                             (_lio_6 + ((_lio_4 * ge) + (_lio_5 * gi)))
                             / ((_lio_8 + (_lio_7 * (-ge))) - (_lio_7 * gi)),
                             0.0)
            _v = np.where(not_refractory,
                          (-_BA_v) + ((_BA_v + v) * np.exp(
                              dt * ((_lio_8 + (_lio_7 * (-ge))) - (_lio_7 * gi)))),
                          (-_BA_v) + (_BA_v + v))
        else:  # euler
            _ge = (_lio_2 * ge) + ge
            _gi = (_lio_3 * gi) + gi
            _v = np.where(not_refractory,
                          (_lio_4 * ((El + ((ge * (Ee - v)) + (gi * (Ei - v))))
                                     - v)) + v,
                          v)
        ge = _ge
        gi = _gi
        v[not_refractory] = _v[not_refractory]
        # ---- thresholds
        spk = ((v > Vt) & not_refractory).nonzero()[0]
        not_refractory[spk] = False
        lastspike[spk] = t
        out_i.append(spk)
        out_n.append(np.full(spk.size, n))
        # ---- synapses (sequential float additions, synapse order)
        se = spk[spk < NE]
        si_ = spk[spk >= NE]
        if se.size:
            idx = np.concatenate([e_post[e_start[k]:e_start[k + 1]] for k in se])
            np.add.at(ge, idx, we)
        if si_.size:
            idx = np.concatenate([i_post[i_start[k]:i_start[k + 1]] for k in si_])
            np.add.at(gi, idx, wi)
        # ---- resets
        v[spk] = Vr
    return (np.concatenate(out_i), np.concatenate(out_n), tv, tge, tgi, v, ge,
            gi)


def verify_exact(args):
    path = args.out or os.path.join(DATA, "brian2_coba_exact.npz")
    d = np.load(path)
    si, sn, tv, tge, tgi, v, ge, gi = replay_coba_numpy(d, str(d["method"]))
    ref_i, ref_n = d["spike_i"].astype(np.int64), d["spike_step"].astype(np.int64)
    res = {
        "file": path, "target_in_file": str(d["target"]),
        "n_spikes_brian": int(ref_i.size), "n_spikes_replay": int(si.size),
        "spikes_identical": bool(si.size == ref_i.size and np.array_equal(si, ref_i)
                                 and np.array_equal(sn, ref_n)),
        "traces_bit_identical": bool(np.array_equal(tv, d["trace_v_V"]) and
                                     np.array_equal(tge, d["trace_ge"]) and
                                     np.array_equal(tgi, d["trace_gi"])),
        "final_state_bit_identical": bool(np.array_equal(v, d["final_v_V"]) and
                                          np.array_equal(ge, d["final_ge"]) and
                                          np.array_equal(gi, d["final_gi"])),
        "max_abs_final_v_diff_V": float(np.max(np.abs(v - d["final_v_V"]))),
    }
    if not res["spikes_identical"]:
        # first step at which the spike sets differ
        steps = int(d["duration_steps"])
        first = None
        for n in range(steps):
            a = np.sort(ref_i[ref_n == n]); b = np.sort(si[sn == n])
            if not np.array_equal(a, b):
                first = n
                break
        res["first_differing_step"] = first
    print(json.dumps(res))
    return res


def run_timing(args):
    """cpp_standalone timing, p = 80/N (80 synapses per neuron on average)."""
    import brian2
    from brian2 import set_device, device, start_scope, ms, prefs
    from brian2.devices.device import reinit_devices
    dur_ms = parse_time_ms(args.duration)
    results = []
    for N in args.sizes:
        d = tempfile.mkdtemp(prefix="brian2_coba_%d_" % N)
        reinit_devices()
        set_device("cpp_standalone", directory=d, build_on_run=False)
        prefs.core.default_float_dtype = np.float64
        start_scope()
        objs = build_coba(N=N, NE=int(0.8 * N), p=80.0 / N,
                          method=args.method, seed_value=args.seed)
        make_network(objs).run(dur_ms * ms)
        t0 = time.perf_counter()
        device.build(directory=d, compile=True, run=False, with_output=False)
        t_compile = time.perf_counter() - t0
        loops, walls = [], []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            device.run(directory=d, with_output=False)
            walls.append(time.perf_counter() - t0)
            loops.append(float(device._last_run_time))
        loop = float(np.min(loops))
        t_binary = float(np.min(walls))
        nsp = int(objs["spikes"].num_spikes)
        r = {
            "model": "coba", "N": N, "NE": int(0.8 * N), "p": 80.0 / N,
            "duration_s": dur_ms / 1000.0, "method": args.method,
            "device": "cpp_standalone (no OpenMP, 1 thread), float64",
            "repeats": args.repeats,
            "loop_time_s_all": loops,
            "loop_time_s": loop,
            "loop_time_per_sim_second": loop / (dur_ms / 1000.0),
            "loop_time_median_per_sim_second": float(np.median(loops))
            / (dur_ms / 1000.0),
            "loop_time_definition": (
                "min over repeats of device._last_run_time (same binary, "
                "same seed, re-run): time of Network::run's step loop "
                "measured inside the standalone binary with std::clock() "
                "(CPU time of the process; = wall time for 1 thread); "
                "excludes synapse creation, initialisation, file I/O."),
            "binary_wall_s": t_binary,
            "binary_wall_definition": (
                "min over repeats of wall time of device.run(): whole "
                "standalone main incl. "
                "synapse creation, init, result writing"),
            "compile_s": t_compile,
            "compile_args": list(prefs.codegen.cpp.extra_compile_args_gcc),
            "n_spikes": nsp,
            "mean_rate_hz": nsp / N / (dur_ms / 1000.0),
            "brian2": brian2.__version__,
            "cpu_count": os.cpu_count(),
            "date": datetime.date.today().isoformat(),
        }
        print(json.dumps(r), flush=True)
        results.append(r)
        shutil.rmtree(d, ignore_errors=True)
        device.reinit()
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"machine": machine_info(), "results": results}, f,
                      indent=1)
        print("wrote", args.out)
    return results


def print_code(args, build=None):
    """Print abstract + generated code of the model's code objects."""
    from brian2 import start_scope, ms
    build = build or build_coba
    set_target(args.target)
    start_scope()
    objs = build(N=100, NE=80, method=args.method, seed_value=0)
    net = make_network(objs)
    net.run(0.2 * ms)
    print("=== schedule:", net.schedule)
    print(net.scheduling_summary())
    P = objs["P"]
    print("=== stateupdater abstract code ===")
    print(P.state_updater.abstract_code)
    print("=== thresholder abstract code ===")
    print(P.thresholder["spike"].abstract_code)
    print("=== resetter abstract code ===")
    print(P.resetter["spike"].abstract_code)
    for name in ("Ce", "Ci"):
        print(f"=== {name} pre pathway abstract code ===")
        print(objs[name].pre.abstract_code if hasattr(objs[name].pre, "abstract_code")
              else objs[name].pre.code)
    runners = []
    for obj in net.objects:
        runners.append(obj)
        runners.extend(getattr(obj, "contained_objects", []))
    for r in runners:
        co = getattr(r, "codeobj", None)
        if co is None or not any(s in co.name for s in (
                "stateupdater", "thresholder", "resetter", "pre_codeobject")):
            continue
        print(f"=== generated {args.target} code: {co.name} ===")
        code = co.code
        if isinstance(code, str):
            print(code)
        else:  # MultiTemplate
            for block in ("before_run", "run", "after_run"):
                txt = getattr(code, block, None) or ""
                if txt.strip():
                    print(f"--- {block} ---")
                    print(txt)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--stats", action="store_true")
    g.add_argument("--exact", action="store_true")
    g.add_argument("--timing", action="store_true")
    g.add_argument("--print-code", action="store_true")
    g.add_argument("--verify-exact", action="store_true",
                   help="replay the --exact npz with a Brian-free numpy "
                        "implementation and compare bit-for-bit")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--seed", type=int, default=0, help="seed for --exact/--timing")
    ap.add_argument("--duration", default=None,
                    help="e.g. 1s, 100ms (default: 1s stats/timing, 100ms exact)")
    ap.add_argument("--transient", default="100ms",
                    help="initial part excluded from the statistics")
    ap.add_argument("--fano-bin", default="100ms")
    ap.add_argument("--method", default="exponential_euler",
                    choices=["exponential_euler", "euler"])
    ap.add_argument("--target", default="numpy", choices=["numpy", "cython"],
                    help="runtime codegen target for --stats/--exact")
    ap.add_argument("--sizes", type=int, nargs="+", default=[4000, 16000, 64000])
    ap.add_argument("--repeats", type=int, default=3,
                    help="--timing: runs of the compiled binary per size")
    ap.add_argument("--out", default=None, help="output file override")
    args = ap.parse_args(argv)
    if args.duration is None:
        args.duration = "100ms" if args.exact else "1s"
    if args.stats:
        run_stats(args, out_json=args.out or os.path.join(
            DATA, "brian2_coba_stats.json"))
    elif args.exact:
        run_exact(args)
    elif args.timing:
        run_timing(args)
    elif args.verify_exact:
        verify_exact(args)
    else:
        print_code(args)


if __name__ == "__main__":
    main()
