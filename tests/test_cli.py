"""The CLI: one-line errors with exit status 2, --force, validate/schema output."""
import json
import subprocess
import sys
from pathlib import Path

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
