"""Every PNG figure the shipped specs produce, from shortened runs (for tests/analysis/test_figures.py).

:func:`record_figures` wraps ``matplotlib.figure.Figure.savefig`` while the runs write
their figures and returns ``{file path: Figure}`` for each PNG written (the Figure as it
was drawn into the file).  Each run is shortened with the same ``--set`` overrides a user
would type; ``python tests/analysis/figure_runs.py OUT`` leaves the PNGs in OUT to look at.
"""
from __future__ import annotations

import contextlib
import sys
from pathlib import Path

from matplotlib.figure import Figure

REPO = Path(__file__).resolve().parents[2]
SPEC = REPO / "spec"
SHARED = REPO.parent / "shared" / "data"

GRID = ["duration=60 ms", "simulation.warmup=20 ms", "generator.n_neurons=100", "generator.n_inputs=30",
        "grid={generator.p.EE.within: [0.1, 0.3], network.scaling.E.I: [0.5, 1.0]}"]
TRAIN = ["training.epochs=1", "training.updates_per_epoch=2", "training.batch=2", "training.chunk_size=20",
         "training.chunks_per_update=2", "training.plot_interval=1"]
TEACHER = ["duration=300 ms", "trials=4", "dashboard.duration=200 ms", "outputs.chunk=100 ms"]
FIT = ["duration=60 ms", "trials=1", "training.chunk=10 ms", "training.chunks_per_update=2",
       "training.warmup=10 ms", "training.epochs=1", "training.updates_per_epoch=2",
       "populations.E.size=160", "populations.I.size=40"]


@contextlib.contextmanager
def _spy(saved: dict):
    original = Figure.savefig

    def savefig(self, fname, *args, **kwargs):
        out = original(self, fname, *args, **kwargs)
        if str(fname).endswith(".png"):
            saved[Path(fname)] = self
        return out

    Figure.savefig = savefig
    try:
        yield saved
    finally:
        Figure.savefig = original


def _workflow_2(out: Path) -> None:
    from neurodsl.analysis.odourants import odourant_report
    from neurodsl.analysis.student import student_report
    from neurodsl.runners.grid import run_network_inference
    from neurodsl.runners.homeostatic import run_homeostatic
    from neurodsl.runners.student import run_student
    from neurodsl.runners.teacher import run_teacher
    from neurodsl.spec import load_spec

    net, homeo, teach, stud = (out / d for d in ("net", "homeo", "olfactory", "student"))
    run_network_inference(load_spec(SPEC / "network_inference.yaml", GRID), net, scheduler="serial",
                          progress=False)
    run_homeostatic(load_spec(SPEC / "homeostatic.yaml", [f"network.structure={net / 'network_structure.npz'}",
                                                         "duration=200 ms", *TRAIN]), homeo, progress=False)
    run_teacher(load_spec(SPEC / "olfactory.yaml", [f"network.structure={homeo / 'network_structure.npz'}",
                                                   *TEACHER]), teach, progress=False)
    odourant_report(teach, teach / "figures")
    run_student(load_spec(SPEC / "student.yaml", [f"teacher={teach}", "trials=4", *TRAIN]), stud, progress=False)
    student_report(stud)


def _mushroom_body(out: Path) -> None:
    from neurodsl.analysis.odourants import odourant_report
    from neurodsl.runners.teacher import run_teacher
    from neurodsl.spec import load_spec

    mb = out / "mushroom_body"
    run_teacher(load_spec(SPEC / "olfactory_mushroom_body.yaml", TEACHER), mb, progress=False)
    odourant_report(mb, mb / "figures")


def _workflows_1_and_3(out: Path) -> None:
    from neurodsl.runners.fit import run_fit
    from neurodsl.runners.rnn_fit import run_rnn_fit
    from neurodsl.spec import load_spec

    run_rnn_fit(load_spec(SPEC / "final_rnn.yaml"), out / "final_rnn", test=True, progress=False)
    run_fit(load_spec(SPEC / "coba_tuned.yaml", FIT), out / "coba_tuned", progress=False)


def record_figures(out: Path, mushroom_body: bool | None = None) -> dict[Path, Figure]:
    """Run every shortened workflow into ``out``; ``{png path: Figure}`` of what was saved."""
    out = Path(out)
    mushroom_body = SHARED.exists() if mushroom_body is None else mushroom_body
    with _spy({}) as saved:
        _workflows_1_and_3(out)
        _workflow_2(out)
        if mushroom_body:
            _mushroom_body(out)
    return saved


if __name__ == "__main__":
    import time
    t0 = time.perf_counter()
    figs = record_figures(Path(sys.argv[1]))
    for p in sorted(figs):
        print(p)
    print(f"{len(figs)} figures in {time.perf_counter() - t0:.1f} s")
