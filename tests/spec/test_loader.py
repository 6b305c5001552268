"""Spec errors point at FILE:LINE:COL and the field, and say what was expected."""
import re
import textwrap

import pytest

from neurodsl.errors import SpecError
from neurodsl.spec import load_spec

TINY = textwrap.dedent("""\
    name: tiny
    kind: simulation
    dt: 0.1 ms
    duration: 5 ms
    populations:
      E:
        size: 8
        cell_type: E
        neuron: {model: lif_cond, tau_m: 20 ms, g_L: 10 nS, E_L: -60 mV, V_th: -50 mV, V_reset: -60 mV, t_ref: 2 ms}
    receptors:
      exc: {kind: exp, tau_decay: 5 ms, E_rev: 0 mV}
    projections:
      - {pre: E, post: E, receptor: exc, weight: 1 nS, connectivity: {kind: bernoulli, p: 0.5}}
    """)


@pytest.fixture
def spec_file(tmp_path):
    def write(text=TINY, name="s.yaml"):
        p = tmp_path / name
        p.write_text(text)
        return p
    return write


def error_of(path, overrides=()):
    with pytest.raises(SpecError) as e:
        load_spec(path, overrides)
    return e.value.one_line()


def test_valid_spec_loads(spec_file):
    ls = load_spec(spec_file())
    assert ls.spec.populations["E"].size == 8
    assert ls.spec.n_steps == 50
    assert len(ls.sha256) == 64


def test_unknown_key_points_at_line_and_suggests(spec_file):
    p = spec_file(TINY.replace("size: 8", "sise: 8"))
    msg = error_of(p)
    assert msg.startswith(f"{p}:7:5: populations.E.sise: unknown key 'sise'; did you mean 'size'?")


def test_wrong_unit_names_field_and_expected(spec_file):
    p = spec_file(TINY.replace("tau_m: 20 ms", "tau_m: 20 mV"))
    msg = error_of(p)
    assert re.match(rf"{re.escape(str(p))}:9:\d+: populations\.E\.neuron\.tau_m: '20 mV' is a voltage, not a time "
                    r"\(expected a time", msg), msg


def test_negative_size(spec_file):
    msg = error_of(spec_file(TINY.replace("size: 8", "size: -8")))
    assert ":7:" in msg and "populations.E.size" in msg and "expected a value > 0" in msg


def test_unknown_population_is_a_cross_field_error(spec_file):
    msg = error_of(spec_file(TINY.replace("pre: E,", "pre: X,")))
    assert ":13:" in msg and "projections[0].pre: unknown population or input 'X'" in msg and "expected one of E" in msg


def test_missing_file(spec_file):
    text = TINY.replace("{kind: bernoulli, p: 0.5}", "{kind: file, file: nowhere.npz}")
    msg = error_of(spec_file(text))
    assert "projections[0].connectivity.file" in msg and "not found" in msg


def test_override_is_validated_like_the_file(spec_file):
    p = spec_file()
    assert load_spec(p, ["duration=10 ms"]).spec.n_steps == 100
    msg = error_of(p, ["duration=10 mV"])
    assert msg.startswith("--set duration=10 mV: duration:")


def test_delay_must_be_whole_steps(spec_file):
    msg = error_of(spec_file(TINY.replace("weight: 1 nS,", "weight: 1 nS, delay: 0.15 ms,")))
    assert "projections[0].delay" in msg and "multiple of dt" in msg


def test_toml_has_the_same_schema(spec_file):
    toml = textwrap.dedent("""\
        name = "tiny"
        kind = "simulation"
        duration = "5 ms"
        [populations.E]
        size = 4
        cell_type = "E"
        [populations.E.neuron]
        model = "lif_cond"
        tau_m = "20 ms"
        g_L = "10 nS"
        E_L = "-60 mV"
        V_th = "-50 mV"
        V_reset = "-60 mV"
        """)
    assert load_spec(spec_file(toml, "s.toml")).spec.populations["E"].size == 4
    msg = error_of(spec_file(toml.replace("tau_m", "tau_n"), "s.toml"))
    assert ":9:" in msg and "unknown key 'tau_n'" in msg


def test_dale_sign_for_current_synapses(spec_file):
    text = TINY.replace("exc: {kind: exp, tau_decay: 5 ms, E_rev: 0 mV}", "exc: {kind: exp, tau_decay: 5 ms}")
    text = text.replace("weight: 1 nS", "weight: -5 pA")
    msg = error_of(spec_file(text))
    assert "projections[0].weight" in msg and "Dale" in msg


def test_relative_paths_in_file_follow_the_spec_and_on_the_command_line_the_cwd(spec_file, tmp_path, monkeypatch):
    import numpy as np
    sub = tmp_path / "specs"
    sub.mkdir()
    np.save(sub / "w.npy", np.ones((8, 8)))
    text = TINY.replace("{kind: bernoulli, p: 0.5}", "{kind: file, file: w.npy}")
    p = sub / "s.yaml"
    p.write_text(text)
    assert load_spec(p).spec.projections[0].connectivity.file == str(sub / "w.npy")
    monkeypatch.chdir(tmp_path)
    override = "projections[0].connectivity.file=specs/w.npy"
    assert load_spec(p, [override]).spec.projections[0].connectivity.file == str(tmp_path / "specs" / "w.npy")
