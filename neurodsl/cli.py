"""Command-line interface: thin click wiring, each command calls one documented function.

User errors print one line ``FILE:LINE:COL: field: message (expected ...)`` on
stderr and exit with status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import functools
import json
import sys
from pathlib import Path

import click

from neurodsl.errors import NeurodslError, OutputExistsError, Location


def _fail(*lines: str) -> None:
    for line in lines:
        click.echo(f"neurodsl: error: {line}", err=True)
    sys.exit(2)


def user_errors(fn):
    """Turn NeurodslError into one line + exit 2 (traceback with --debug)."""

    @functools.wraps(fn)
    def wrapper(*args, debug: bool = False, **kwargs):
        try:
            return fn(*args, **kwargs)
        except NeurodslError as e:
            if debug:
                raise
            _fail(*e.lines())
        except KeyboardInterrupt:
            click.echo("neurodsl: interrupted", err=True)
            sys.exit(130)

    return click.option("--debug", is_flag=True, help="Show the full traceback on errors.")(wrapper)


def spec_command(name: str, kind: str | None, *options, writes: bool = True, group=None):
    """Declare a command that reads a SPEC: its name, the spec kind it runs (None: any), its own
    options; ``writes`` adds ``--out``/``--force``.  Every SPEC command takes ``--set`` and
    ``--debug``.  The callback gets the loaded spec (``loaded``, kind already checked, before any
    folder is made) instead of ``spec_path``/``overrides``."""

    def decorate(fn):
        @functools.wraps(fn)
        def body(spec_path, overrides, **kw):
            return fn(load(spec_path, overrides, kind=kind, command=name), **kw)

        cmd = user_errors(body)
        for opt in reversed(options):
            cmd = opt(cmd)
        if writes:
            cmd = click.option("--force", is_flag=True, help="Write into a non-empty output folder.")(cmd)
            cmd = click.option("--out", "out", type=click.Path(file_okay=False), default=None,
                               help="Output folder (default results/<spec name>/).")(cmd)
        cmd = click.option("--set", "overrides", multiple=True, metavar="PATH=VALUE",
                           help="Override a spec value, e.g. --set duration='200 ms' (repeatable).")(cmd)
        cmd = click.argument("spec_path", metavar="SPEC", type=click.Path())(cmd)
        return (group or main).command(name)(cmd)

    return decorate


def prepare_out(out: str | None, name: str, force: bool, resume: bool = False) -> Path:
    """The output folder; an existing non-empty one needs --force (or --resume)."""
    path = Path(out) if out else Path("results") / name
    if path.exists() and any(path.iterdir()) and not (force or resume):
        raise OutputExistsError("output folder exists and is not empty", location=Location(str(path)),
                                expected="a new folder, or --force to overwrite")
    path.mkdir(parents=True, exist_ok=True)
    return path


def load(spec_path: str, overrides, kind: str | None = None, command: str = ""):
    """The validated spec; with ``kind``, a spec of another kind is a one-line user error."""
    from neurodsl.spec import load_spec
    loaded = load_spec(spec_path, overrides)
    if kind is not None and loaded.spec.kind != kind:
        raise NeurodslError(f"`neurodsl {command}` runs specs of kind {kind!r}, this spec is kind "
                            f"{loaded.spec.kind!r}", field="kind", location=Location(spec_path),
                            expected=f"kind: {kind}, or `neurodsl run {spec_path}`, which dispatches by kind")
    return loaded


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="neurodsl")
@click.option("--devices", default=None, metavar="N|all",
              help="Split batched trials over the first N visible JAX devices (default: all that divide the "
                   "batch evenly; sets NEURODSL_DEVICES; docs/devices.md).")
def main(devices=None):
    """neurodsl: declare biologically constrained networks in YAML, simulate and fit them."""
    if devices is not None:
        import os
        os.environ["NEURODSL_DEVICES"] = str(devices)


@spec_command("validate", None, writes=False)
def validate(loaded):
    """Validate SPEC and print a short summary (populations, sizes, synapse counts)."""
    from neurodsl.summary import summarize
    click.echo(summarize(loaded.spec))


@main.command()
def schema():
    """Print the JSON Schema of specs (for editor completion)."""
    from neurodsl.spec import json_schema
    click.echo(json.dumps(json_schema(), indent=1))


def _simulate(loaded, out_dir, **_):
    from neurodsl.runners.simulate import simulate as run
    ds = run(loaded, out_dir)
    click.echo(_rate_summary(ds))
    click.echo(f"wrote {out_dir / 'simulation.nc'}")


def _fit_rnn(loaded, out_dir, resume=False, test=False):
    from neurodsl.runners.rnn_fit import run_rnn_fit
    summary = run_rnn_fit(loaded, out_dir, resume=resume, test=test)
    if summary.get("interrupted"):
        click.echo(f"interrupted: state saved in {out_dir / 'checkpoints'}; continue with --resume", err=True)
        sys.exit(130)


def _teacher(loaded, out_dir, **_):
    from neurodsl.runners.teacher import run_teacher
    run_teacher(loaded, out_dir)
    click.echo(f"wrote {out_dir / 'teacher.nc'}")


def _infer(loaded, out_dir, scheduler=None, **_):
    from neurodsl.runners.grid import run_network_inference
    ds = run_network_inference(loaded, out_dir, scheduler=scheduler)
    click.echo(f"best score {ds.attrs.get('best_score')}; wrote {out_dir / 'grid.nc'} and "
               f"{out_dir / 'network_structure.npz'}")


def _homeostatic(loaded, out_dir, resume=False, **_):
    from neurodsl.runners.homeostatic import run_homeostatic
    summary = run_homeostatic(loaded, out_dir, resume=resume)
    _finish_training(summary, out_dir)


def _student(loaded, out_dir, resume=False, **_):
    from neurodsl.runners.student import run_student
    summary = run_student(loaded, out_dir, resume=resume)
    _finish_training(summary, out_dir)


def _fit(loaded, out_dir, resume=False, test=False, **_):
    from neurodsl.runners.fit import run_fit
    summary = run_fit(loaded, out_dir, resume=resume, test=test)
    _finish_training(summary, out_dir)


def _finish_training(summary: dict, out_dir: Path) -> None:
    if summary.get("interrupted"):
        click.echo(f"interrupted: state saved in {out_dir / 'checkpoints'}; continue with --resume", err=True)
        sys.exit(130)
    click.echo(f"results in {out_dir}")


# kind -> function(loaded, out_dir, **options); `neurodsl run` dispatches through it
RUNNERS = {"simulation": _simulate, "rnn_fit": _fit_rnn, "teacher": _teacher, "network_inference": _infer,
           "homeostatic": _homeostatic, "student": _student, "fit": _fit}


@spec_command("run", None,
              click.option("--resume", is_flag=True, help="Continue from the latest checkpoint in OUT."),
              click.option("--test", "test_mode", is_flag=True,
                           help="A few epochs of the same pipeline (smoke run)."))
def run(loaded, out, force, resume, test_mode):
    """Run SPEC with the workflow its `kind` names (rnn_fit: fit an E-I RNN to recorded trials)."""
    runner = RUNNERS.get(loaded.spec.kind)
    if runner is None:
        raise NeurodslError(f"`neurodsl run` has no runner for kind {loaded.spec.kind!r}", field="kind",
                            location=Location(loaded.path), expected="one of " + ", ".join(RUNNERS))
    out_dir = prepare_out(out, loaded.spec.name, force, resume=resume)
    runner(loaded, out_dir, resume=resume, test=test_mode)


@spec_command("simulate", "simulation")
def simulate(loaded, out, force):
    """Simulate SPEC and write OUT/simulation.nc (spikes, binned rates, provenance)."""
    _simulate(loaded, prepare_out(out, loaded.spec.name, force))


@main.group("make-data")
def make_data():
    """Write example datasets in the formats the workflows read."""


@make_data.command("rnn-export")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="The .mat file to write.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--trials", default=192, show_default=True, type=int)
@click.option("--version", type=click.Choice(["7.3", "5"]), default="7.3", show_default=True)
@click.option("--force", is_flag=True, help="Overwrite an existing file (and its ground truth).")
@click.option("--continuous-inputs", is_flag=True,
              help="Continuous eye_x/eye_y traces (drift + saccade scatter): every (trial, bin) input is distinct.")
@user_errors
def make_data_rnn_export(out, seed, trials, version, force, continuous_inputs):
    """A recording in the rnn_export .mat format, generated by a known E-I RNN (ground truth beside it)."""
    from neurodsl.runners.rnn_fit import make_data as make
    gt = Path(out).with_name(f"{Path(out).stem}_ground_truth.npz")
    if not force and (Path(out).exists() or gt.exists()):
        raise OutputExistsError(f"{out if Path(out).exists() else gt} exists", field="--out",
                                location=Location(str(out)), expected="a new file name, or --force to overwrite")
    for path in make(Path(out), seed=seed, n_trials=trials, version=version, continuous=continuous_inputs):
        click.echo(f"wrote {path}")


@spec_command("teacher", "teacher")
def teacher(loaded, out, force):
    """Simulate the olfactory teacher of SPEC and write OUT/teacher.nc (+ structure, spec)."""
    _teacher(loaded, prepare_out(out, loaded.spec.name, force))


@spec_command("infer-network", "network_inference",
              click.option("--scheduler", default=None, metavar="ADDRESS",
                           help="Dask scheduler address (default: a LocalCluster with one worker per core)."),
              click.option("--serial", is_flag=True, help="Run the grid points one after another in this process."))
def infer_network(loaded, out, force, scheduler, serial):
    """Grid search over connectome generators: OUT/grid.nc, the best network_structure.npz, figures.

    Re-running into the same OUT resumes: finished points are not recomputed.
    """
    out_path = Path(out) if out else Path("results") / loaded.spec.name
    out_dir = prepare_out(out, loaded.spec.name, force, resume=(out_path / "points").is_dir())
    _infer(loaded, out_dir, scheduler="serial" if serial else scheduler)


@spec_command("homeostatic", "homeostatic",
              click.option("--resume", is_flag=True, help="Continue from OUT/checkpoints/checkpoint_latest."))
def homeostatic(loaded, out, force, resume):
    """Tune weights or scaling factors toward target rates/CVs; writes the tuned network_structure.npz."""
    _homeostatic(loaded, prepare_out(out, loaded.spec.name, force, resume=resume), resume=resume)


@spec_command("fit-student", "student",
              click.option("--resume", "resume", is_flag=False, flag_value="latest", default=None, metavar="[PATH]",
                           help="Continue from the latest checkpoint in OUT, or from the checkpoint file PATH."))
def fit_student(loaded, out, force, resume):
    """Fit a student with the teacher's connectivity to the teacher's spike trains (surrogate gradients)."""
    out_dir = prepare_out(out, loaded.spec.name, force, resume=resume is not None)
    _student(loaded, out_dir, resume=True if resume == "latest" else (resume or False))


@main.group()
def analyze():
    """Figures and reports from output folders."""


def run_folder(run_dir: str, needs: str, made_by: str) -> Path:
    """``run_dir`` as a Path; a folder without ``needs`` is a one-line user error."""
    path = Path(run_dir)
    if not (path / needs).is_file():
        what = "no such folder" if not path.is_dir() else f"no {needs} in this folder"
        raise NeurodslError(what, location=Location(str(path)), expected=f"the --out folder of `{made_by}`")
    return path


@analyze.command("odourants")
@click.argument("run_dir", metavar="DIR", type=click.Path())
@click.option("--out", default=None, type=click.Path(file_okay=False), help="Figure folder (default DIR/figures).")
@user_errors
def analyze_odourants(run_dir, out):
    """Odour selectivity/reliability dashboard and statistics of a teacher run in DIR."""
    path = run_folder(run_dir, "teacher.nc", "neurodsl teacher SPEC")
    from neurodsl.analysis.odourants import odourant_report
    paths = odourant_report(path, Path(out) if out else path / "figures")
    click.echo("\n".join(f"wrote {p}" for p in paths))


@analyze.command("student")
@click.argument("run_dir", metavar="DIR", type=click.Path())
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Figure folder (default DIR/figures/student).")
@user_errors
def analyze_student(run_dir, out):
    """Poisson vs learning variability dashboard and identifiability report of a student run.

    Writes the figures and DIR/student_report.json and prints each factor's verdict."""
    path = run_folder(run_dir, "comparison.npz", "neurodsl fit-student SPEC")
    import json
    from neurodsl.analysis.student import student_report
    paths = student_report(path, Path(out) if out else None)
    click.echo("\n".join(f"wrote {p}" for p in paths))
    verdicts = json.loads(paths[-1].read_text()).get("identifiability", {}).get("curvature", {}) or {}
    for name, verdict in (verdicts.get("verdicts") or {}).items():
        click.echo(f"{name}: {verdict}")


def _rate_summary(ds) -> str:
    import numpy as np
    lines = []
    mean = ds["rate"].mean(("trial", "time")).values
    for pop in dict.fromkeys(ds["population"].values.tolist()):
        sel = ds["population"].values == pop
        lines.append(f"  {pop:>10s}: {sel.sum():6d} neurons, mean rate {np.mean(mean[sel]):7.2f} Hz")
    return "\n".join([f"{ds.attrs.get('spec_name', '')}: {ds.attrs['duration_ms']:.0f} ms, "
                      f"{ds.sizes['trial']} trial(s), {ds.sizes['spike']} spikes"] + lines)


if __name__ == "__main__":  # pragma: no cover
    main()
