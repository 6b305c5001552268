#!/usr/bin/env python
"""Brian2 reference implementation of the CUBA benchmark (Brette et al. 2007,
benchmark 2: LIF neurons with exponential synaptic currents), exactly as in
Brian2's own example ``examples/CUBA.py``:

    taum = 20 ms, taue = 5 ms, taui = 10 ms
    Vt = -50 mV, Vr = -60 mV, El = -49 mV
    dv/dt  = (ge+gi-(v-El))/taum : volt (unless refractory)
    dge/dt = -ge/taue : volt
    dgi/dt = -gi/taui : volt
    NeuronGroup(4000, threshold='v>Vt', reset='v = Vr', refractory=5 ms,
                method='exact')      # Brian2's example uses 'exact'
    P.v = 'Vr + rand() * (Vt - Vr)';  P.ge = P.gi = 0 mV
    we = (60*0.27/10) mV = 1.62 mV,   wi = (-20*4.5/10) mV = -9 mV
    Ce = Synapses(P, P, on_pre='ge += we'); Ce.connect('i<3200', p=0.02)
    Ci = Synapses(P, P, on_pre='gi += wi'); Ci.connect('i>=3200', p=0.02)

(Order of random-number use as in the example: v init, then E, then I
synapses.)  Autapses are allowed (the connect condition does not exclude
i == j).  No delay, no external input, dt = 0.1 ms (Brian2's default).

Modes:
  --stats --seeds 0 1 2 3 4 --duration 1s   -> tests/data/brian2_cuba_stats.json
  --print-code                              -> Brian2's generated code
  --method exact (default) | exponential_euler | euler

Statistic definitions are shared with brian2_coba.py (see README.md).
"""
import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # keep benchmarks/reference free of __pycache__
import brian2_coba as common  # noqa: E402  (shared stats / IO helpers)

CUBA_EQS = """
dv/dt  = (ge+gi-(v-El))/taum : volt (unless refractory)
dge/dt = -ge/taue : volt
dgi/dt = -gi/taui : volt
"""


def cuba_parameters():
    from brian2 import ms, mV
    return dict(taum=20 * ms, taue=5 * ms, taui=10 * ms,
                Vt=-50 * mV, Vr=-60 * mV, El=-49 * mV,
                we=(60 * 0.27 / 10) * mV, wi=(-20 * 4.5 / 10) * mV,
                refractory=5 * ms)


def build_cuba(N=4000, NE=None, p=0.02, method="exact", seed_value=0,
               record_states=None, dt_ms=0.1):
    from brian2 import (NeuronGroup, Synapses, SpikeMonitor, StateMonitor,
                        defaultclock, ms, mV, seed)
    if NE is None:
        NE = int(0.8 * N)
    defaultclock.dt = dt_ms * ms
    seed(seed_value)
    prm = cuba_parameters()
    ns = {k: v for k, v in prm.items() if k != "refractory"}
    ns["NE"] = NE
    P = NeuronGroup(N, CUBA_EQS, threshold="v>Vt", reset="v = Vr",
                    refractory=prm["refractory"], method=method, namespace=ns,
                    name="P")
    P.v = "Vr + rand() * (Vt - Vr)"
    P.ge = 0 * mV
    P.gi = 0 * mV
    Ce = Synapses(P, P, on_pre="ge += we", namespace=ns, name="Ce")
    Ci = Synapses(P, P, on_pre="gi += wi", namespace=ns, name="Ci")
    Ce.connect("i<NE", p=p)
    Ci.connect("i>=NE", p=p)
    sm = SpikeMonitor(P, name="spikes")
    objs = dict(P=P, Ce=Ce, Ci=Ci, spikes=sm, NE=NE, N=N)
    if record_states is not None:
        objs["states"] = StateMonitor(P, ["v", "ge", "gi"],
                                      record=record_states, name="states")
    return objs


def cuba_param_dict(method):
    return {
        "N": 4000, "NE": 3200, "NI": 800, "p_connect": 0.02,
        "autapses": "allowed (not excluded)",
        "taum_ms": 20.0, "taue_ms": 5.0, "taui_ms": 10.0,
        "Vt_mV": -50.0, "Vr_mV": -60.0, "El_mV": -49.0,
        "we_mV": 60 * 0.27 / 10, "wi_mV": -20 * 4.5 / 10,
        "refractory_ms": 5.0,
        "refractory_semantics": "v is frozen ('unless refractory'), ge/gi keep "
                                "decaying; threshold is 'v > Vt and "
                                "not_refractory'",
        "threshold": "v > Vt", "reset": "v = Vr",
        "synaptic_delay_ms": 0.0, "external_input": "none",
        "equations": CUBA_EQS.strip(),
        "init": {"v": "Vr + rand()*(Vt - Vr)  (uniform in [-60, -50) mV)",
                 "ge": "0 mV", "gi": "0 mV"},
        "method": method,
        "source": "Brian2 examples/CUBA.py (Brette et al. 2007 benchmark 2)",
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description="Brian2 CUBA reference")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--stats", action="store_true")
    g.add_argument("--print-code", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--duration", default="1s")
    ap.add_argument("--transient", default="100ms")
    ap.add_argument("--fano-bin", default="100ms")
    ap.add_argument("--method", default="exact",
                    choices=["exact", "exponential_euler", "euler"])
    ap.add_argument("--target", default="numpy", choices=["numpy", "cython"])
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    if args.stats:
        common.run_stats(
            args, model="cuba", build=build_cuba,
            out_json=args.out or os.path.join(common.DATA,
                                              "brian2_cuba_stats.json"),
            params=cuba_param_dict(args.method), description=__doc__)
    else:
        common.print_code(args, build=build_cuba)


if __name__ == "__main__":
    main()
