"""Olfactory teacher compilation: E-then-I permutation, weights, batch projection, odour patterns and schedules."""
import textwrap

import numpy as np
import pytest

from neurodsl.compile.odour import odour_patterns, odour_schedule, read_odour_table
from neurodsl.compile.olfactory import build_olfactory
from neurodsl.errors import DataError
from neurodsl.io.structure import NetworkStructure
from neurodsl.spec import load_spec_text

BASE = "name: t\nkind: teacher\n"


def spec(*overrides, extra=""):
    return load_spec_text(BASE + textwrap.dedent(extra), overrides=list(overrides)).spec


def interleaved() -> NetworkStructure:
    ct = np.array(["I", "E", "E", "I", "E"])
    return NetworkStructure(ct, np.array([1, 0, 3], np.int32), np.array([0, 4, 2], np.int32),
                            np.array([2.0, -3.0, -1.0], np.float32), np.array([0, 1], np.int32),
                            np.array([3, 2], np.int32), np.array([1.0, 0.5], np.float32), 2).validate()


def test_interleaved_types_are_permuted_and_weights_scaled():
    s = interleaved()
    sp = spec("mitral.n=2", "network.scaling.E.I=2.0", "network.scaling.I.input=0.5", "odours.n=2")
    m = build_olfactory(sp, s, batch=1)
    assert m.perm.tolist() == [1, 2, 4, 0, 3]  # E in order, then I
    assert list(m.net.populations) == ["E", "I"] and m.net.populations["I"].info.offset == 3
    by = {p.label: p for p in m.net.projections}
    # E1 -> I0 (w 2): local E index 0 -> local I index 0
    assert by["E->I"].synapses.dense()[0, 0] == 2.0
    # I0 -> E4 (w -3): magnitude, scaled by scaling[E, I] = 2, times g_bar (the template puts the
    # scaling into the projection's weight and g_bar into its receptors: the product is what counts)
    g = {k: p.synapses.dense() for k, p in by.items()}
    assert g["I->E"][0, 2] * by["I->E"].scales["GABA_A"] == pytest.approx(3.0 * 2.0 * 8.139)
    assert g["mitral->I"][0, 1] * by["mitral->I"].scales["AMPA"] == pytest.approx(1.0 * 0.5 * 4.177)
    assert g["E->I"][0, 0] * by["E->I"].scales["AMPA"] == pytest.approx(2.0 * 4.177)
    assert set(m.net.populations["E"].kinetics) == {"AMPA", "NMDA", "GABA_A"}


def test_mitral_count_must_match_structure():
    with pytest.raises(DataError, match="mitral.n"):
        build_olfactory(spec("mitral.n=3"), interleaved())


def test_random_odours_modulate_a_fraction():
    sp = spec("odours.n=3", "odours.fraction=0.2", "odours.modulation=30 Hz")
    p = odour_patterns(sp.odours, 50, 6.0, seed=0)
    assert p.delta.shape == (3, 50) and ((p.delta > 0).sum(1) == 10).all()
    np.testing.assert_allclose(p.rates().max(), 36.0)
    assert p.names == ["odour1", "odour2", "odour3"]


def test_odour_table_change_plus_spontaneous(tmp_path):
    (tmp_path / "t.csv").write_text("odor,G1,,G3,cas\nodor,r1,r2,r3,\n"
                                    "a,10,-20,0,1-2-3\nb,0,5,-1,4-5-6\nspontaneous firing rate,8,4,2,\n")
    names, channels, values, spont = read_odour_table(tmp_path / "t.csv")
    assert names == ["a", "b"] and channels == ["r1", "r2", "r3"] and spont.tolist() == [8, 4, 2]
    sp = spec(extra=f"odours: {{kind: table, file: {tmp_path / 't.csv'}, select: [b, a]}}\n")
    p = odour_patterns(sp.odours, 6, 6.0, seed=0)
    assert p.names == ["b", "a"] and p.channel.tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_allclose(p.rates()[1], [18, 18, 0, 0, 2, 2])  # clipped at 0
    np.testing.assert_allclose(p.base, [8, 8, 4, 4, 2, 2])


def test_schedules():
    fixed = odour_schedule(spec().schedule, 3, 4, 100, 1.0, 0, trial_odours=[1, -1])
    assert fixed.presented.tolist() == [1, -1, 1, -1]
    np.testing.assert_array_equal(fixed.w[0], [[0, 1, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0]])
    ou = odour_schedule(spec("schedule.kind=ou", "schedule.tau=200 ms").schedule, 4, 3, 1000, 1.0, 0)
    assert ou.w.shape == (100, 3, 4) and ou.slot_steps == 10 and ou.presented is None
    np.testing.assert_allclose(ou.w.sum(-1), 1.0, rtol=1e-5)
    assert (ou.w.argmax(-1) != ou.w[0].argmax(-1)).any()  # a fast OU switches odours
