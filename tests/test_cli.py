"""The CLI: one-line errors with exit status 2, --force, validate/schema output."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from neurodsl.cli import main

REPO = Path(__file__).resolve().parents[1]
COBA = str(REPO / "spec" / "coba.yaml")


def test_validate_prints_summary():
    r = CliRunner().invoke(main, ["validate", COBA])
    assert r.exit_code == 0, r.output
    assert "3,200 E" in r.output and "~204,800 synapses" in r.output


def test_bad_override_is_one_line_and_exit_2():
    r = CliRunner().invoke(main, ["validate", COBA, "--set", "populations.E.neuron.tau_m=4 mV"])
    assert r.exit_code == 2
    lines = [l for l in r.output.splitlines() if l.strip()]
    assert len(lines) == 1 and "populations.E.neuron.tau_m" in lines[0] and "expected a time" in lines[0]


def test_debug_shows_traceback():
    p = subprocess.run([sys.executable, "-m", "neurodsl.cli", "validate", "missing.yaml", "--debug"],
                       capture_output=True, text=True)
    assert p.returncode != 0 and "Traceback" in p.stderr


def test_schema_is_json_with_all_kinds():
    r = CliRunner().invoke(main, ["schema"])
    schema = json.loads(r.output)
    assert "oneOf" in json.dumps(schema) or "anyOf" in json.dumps(schema)
    assert "LIFCond" in schema["$defs"]


def test_out_dir_needs_force(tmp_path):
    (tmp_path / "x").write_text("keep me")
    args = ["simulate", COBA, "--out", str(tmp_path), "--set", "duration=2 ms"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "--force" in r.output
    r = CliRunner().invoke(main, args + ["--force", "--set", "populations.E.size=40", "--set", "populations.I.size=10"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "simulation.nc").exists() and (tmp_path / "x").read_text() == "keep me"


SPEC = REPO / "spec"
WRONG_KIND = [("simulate", "olfactory", "simulation", "teacher"),
              ("homeostatic", "coba", "homeostatic", "simulation"),
              ("teacher", "coba", "teacher", "simulation"),
              ("fit-student", "olfactory", "student", "teacher"),
              ("infer-network", "homeostatic", "network_inference", "homeostatic"),
              ("simulate", "final_rnn", "simulation", "rnn_fit")]


def _one_line(r) -> str:
    lines = [l for l in r.output.splitlines() if l.strip()]
    assert r.exit_code == 2 and len(lines) == 1, r.output
    assert "Traceback" not in r.output
    return lines[0]


@pytest.mark.parametrize("command,spec,expects,actual", WRONG_KIND, ids=[f"{c}-{s}" for c, s, *_ in WRONG_KIND])
def test_wrong_kind_is_one_line_exit_2_and_creates_nothing(tmp_path, monkeypatch, command, spec, expects, actual):
    monkeypatch.chdir(tmp_path)
    path = str(SPEC / f"{spec}.yaml")
    for extra in ([], ["--out", str(tmp_path / "out")]):
        line = _one_line(CliRunner().invoke(main, [command, path] + extra))
        assert path in line and repr(expects) in line and repr(actual) in line
        assert "neurodsl run" in line and "dispatches by kind" in line
        assert list(tmp_path.iterdir()) == []  # neither results/<name> nor --out


@pytest.mark.parametrize("which,needs", [("student", "comparison.npz"), ("odourants", "teacher.nc")])
def test_analyze_wrong_folder_is_one_line_exit_2_and_creates_nothing(tmp_path, which, needs):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "unrelated.txt").write_text("x")
    line = _one_line(CliRunner().invoke(main, ["analyze", which, str(tmp_path / "run")]))
    assert str(tmp_path / "run") in line and needs in line
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["unrelated.txt"]
    line = _one_line(CliRunner().invoke(main, ["analyze", which, str(tmp_path / "missing")]))
    assert "no such folder" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_options_follow_each_command_declaration():
    def options(*path):
        cmd = main
        for p in path:
            cmd = cmd.commands[p]
        return {o for p in cmd.params for o in p.opts}
    assert "--out" not in options("validate") and "--force" not in options("validate")
    assert {"--set", "--debug"} <= options("validate")
    for name in ("run", "simulate", "teacher", "infer-network", "homeostatic", "fit-student"):
        assert {"--set", "--out", "--force", "--debug"} <= options(name), name
    assert "--resume" in options("homeostatic") and "--serial" in options("infer-network")
    assert "--resume" not in options("simulate")
    assert "--out" in options("analyze", "odourants")


def test_every_spec_error_is_shown_one_per_line():
    r = CliRunner().invoke(main, ["validate", COBA, "--set", "populations.E.neuron.tau_m=4 mV",
                                  "--set", "duration=-1", "--set", "projections[0].weight=abc"])
    lines = [l for l in r.output.splitlines() if l.strip()]
    assert r.exit_code == 2 and len(lines) == 3, r.output
    assert all(l.startswith("neurodsl: error: --set ") for l in lines)
    for field in ("populations.E.neuron.tau_m", "duration", "projections[0].weight"):
        assert sum(f": {field}: " in l for l in lines) == 1, field  # one line per field
    assert "more error" not in r.output


def test_debug_traceback_shows_every_spec_error():
    p = subprocess.run([sys.executable, "-m", "neurodsl.cli", "validate", COBA, "--debug",
                        "--set", "duration=-1", "--set", "populations.E.size=-3"], capture_output=True, text=True)
    assert "Traceback" in p.stderr and "duration: -1 has no unit" in p.stderr
    assert "populations.E.size: -3 is out of range" in p.stderr


@pytest.mark.parametrize("existing", ["data.mat", "data_ground_truth.npz"])
def test_make_data_does_not_overwrite_without_force(tmp_path, existing):
    (tmp_path / existing).write_bytes(b"precious")
    out = str(tmp_path / "data.mat")
    r = CliRunner().invoke(main, ["make-data", "rnn-export", "--out", out, "--trials", "8"])
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert r.exit_code == 2 and len(lines) == 1 and "--force" in lines[0], r.output
    assert (tmp_path / existing).read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]
    r = CliRunner().invoke(main, ["make-data", "rnn-export", "--out", out, "--trials", "8", "--force"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / existing).read_bytes() != b"precious"
