"""Every figure the shipped specs produce (shortened runs, tests/analysis/figure_runs.py) is readable:
each axes with data has x and y labels, each colorbar a label, each heat map a colorbar, no title is
cut off at the figure's edge; plus the specific problems issue 15 measured."""
from __future__ import annotations

import re

import numpy as np
import pytest
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection, PathCollection

from figure_runs import SHARED, record_figures


@pytest.fixture(scope="module")
def figs(tmp_path_factory):
    out = tmp_path_factory.mktemp("figures")
    return out, record_figures(out)


def _by_name(figs, *parts):
    hits = [f for p, f in figs[1].items() if all(s in str(p) for s in parts)]
    assert hits, f"no figure {parts} among {sorted(p.name for p in figs[1])}"
    return hits[0]


def _has_data(ax) -> bool:
    return bool(ax.lines or ax.collections or ax.images or ax.patches)


def _is_diagram(ax) -> bool:
    """A drawing without coordinate axes (a graph layout): no ticks on either axis or axis off."""
    return not ax.axison or (not len(ax.get_xticks()) and not len(ax.get_yticks()))


def _problems(fig) -> list[str]:
    out = []
    sup_x = getattr(fig, "_supxlabel", None) is not None and fig._supxlabel.get_text()
    sup_y = getattr(fig, "_supylabel", None) is not None and fig._supylabel.get_text()
    FigureCanvasAgg(fig)  # pyplot's close leaves a bare canvas; draw again as the file was drawn
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    box = fig.bbox
    colorbars = [ax._colorbar for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]
    for i, ax in enumerate(fig.axes):
        if not ax.get_visible():
            continue
        cb = getattr(ax, "_colorbar", None)
        if cb is not None:
            label = ax.get_ylabel() if cb.orientation == "vertical" else ax.get_xlabel()
            if not label.strip():
                out.append(f"axes {i}: colorbar without a label")
            continue
        if not _has_data(ax) or _is_diagram(ax):
            continue
        name = f"axes {i} ({ax.get_title() or 'untitled'})"
        if not (ax.get_xlabel().strip() or sup_x):
            out.append(f"{name}: no x label")
        if not (ax.get_ylabel().strip() or sup_y):
            out.append(f"{name}: no y label")
        for im in ax.images:
            if im.colorbar is None and not any(c.mappable.norm is im.norm for c in colorbars):
                out.append(f"{name}: heat map without a colorbar")
    titles = [ax.title for ax in fig.axes if ax.get_visible()] + [t for t in (fig._suptitle,) if t is not None]
    for t in titles:
        if t.get_text() and t.get_visible():
            e = t.get_window_extent(renderer)
            if e.x0 < box.x0 - 1 or e.x1 > box.x1 + 1 or e.y1 > box.y1 + 1:
                out.append(f"title {t.get_text()!r} is cut off at the figure's edge")
    return out


def test_every_figure_is_labelled(figs):
    out, saved = figs
    names = {p.name for p in saved}
    assert {"psth_conditions.png", "pca.png", "attention.png", "fano.png", "weights.png", "training.png",
            "before_after_rates.png", "rates.png", "dashboard.png", "connectivity.png", "raster.png",
            "identifiability.png", "variability.png"} <= names
    assert any(n.startswith("score_") for n in names)
    bad = {str(p.relative_to(out)): _problems(f) for p, f in saved.items()}
    bad = {k: v for k, v in bad.items() if v}
    assert not bad, "\n".join(f"{k}: {'; '.join(v)}" for k, v in sorted(bad.items()))


def test_condition_psth_titles_quote_the_reports_r(figs):
    out, _ = figs
    fit = xr.open_dataset(out / "final_rnn" / "fit.nc")
    fig = _by_name(figs, "psth_conditions")
    neuron = list(fit["neuron"].values)
    titles = [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_title()]
    assert titles
    for t in titles:
        n, r = re.search(r"neuron (\d+).*r = (-?[0-9.]+)", t).groups()
        assert float(r) == pytest.approx(float(fit["r_condition"].values[neuron.index(int(n))]), abs=0.006), t
    labels = [h.get_label() for h in fig.axes[0].get_legend_handles_labels()[0]]
    assert labels and not any(re.fullmatch(r"condition=\d+", lab) for lab in labels)


def test_fano_says_the_model_is_noise_free(figs):
    fig = _by_name(figs, "final_rnn", "fano")
    text = " ".join(t.get_text() for ax in fig.axes for t in [ax.title, *ax.texts])
    text += " " + " ".join(t.get_text() for t in fig.texts)
    text += " " + (fig._suptitle.get_text() if fig._suptitle else "")
    assert "noise-free" in text


def test_grid_star_sits_on_its_cell_and_colours_ignore_outliers(figs):
    fig = _by_name(figs, "net", "score_")
    ax = fig.axes[0]
    star = [ln for ln in ax.lines if ln.get_marker() == "*"]
    assert len(star) == 1
    x, y = star[0].get_xdata()[0], star[0].get_ydata()[0]
    assert float(x).is_integer() and float(y).is_integer()
    from neurodsl.analysis.connectome import grid_score_maps
    score = np.array([[1.0, 2.0, 3.0], [1.5, 2.5, 1000.0]])
    ds = xr.Dataset({"score": (("a", "b"), score)}, coords={"a": [0, 1], "b": [0, 1, 2]})
    (_, f), = grid_score_maps(ds)
    lo, hi = f.axes[0].images[0].get_clim()
    assert hi < 100 and lo <= 1.0


def test_attention_drops_constant_tokens():
    from neurodsl.analysis.rnn_figures import attention_patterns
    names = ["a", "const", "b"]
    fit = xr.Dataset({"attention": (("head", "input_query", "input_key"), np.random.default_rng(0).random((2, 3, 3)))},
                     coords={"input_query": names, "input_key": names,
                             "input_constant": ("input_query", [False, True, False])})
    fig = attention_patterns(fit)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]


def test_workflow_2_passes_each_stage_on(figs):
    """infer-network -> homeostatic -> teacher -> fit-student: each stage reads the one before."""
    from neurodsl.io.structure import load_structure
    out, _ = figs
    s0 = load_structure(out / "net" / "network_structure.npz")
    s1 = load_structure(out / "homeo" / "network_structure.npz")
    assert s1.n == s0.n and np.array_equal(s1.rec_pre, s0.rec_pre)  # same connectome, tuned scaling
    assert not np.allclose(s1.scaling, s0.scaling)
    teacher = xr.open_dataset(out / "olfactory" / "teacher.nc")
    assert teacher.sizes["neuron"] == s1.n
    s2 = load_structure(out / "student" / "network_structure.npz")
    assert np.array_equal(s2.rec_pre, s1.rec_pre) and (out / "student" / "student_report.json").exists()


def test_student_figures(figs):
    fig = _by_name(figs, "student", "raster")
    n_spikes = sum(len(c.get_segments()) for ax in fig.axes for c in ax.collections if isinstance(c, LineCollection))
    assert n_spikes >= 200
    fig = _by_name(figs, "identifiability")
    ax = fig.axes[0]
    labels = {t.get_text() for t in ax.get_legend().get_texts()}
    assert {"E→E recovered", "I→E recovered", "input→I recovered"} <= labels


@pytest.mark.skipif(not SHARED.exists(), reason="needs ../shared/data")
def test_mushroom_body_dashboard(figs):
    fig = _by_name(figs, "mushroom_body", "dashboard")
    legend_labels = {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()}
    assert not any(lab.split()[0] == "I" for lab in legend_labels)
    for ax in fig.axes:
        if ax.get_title().startswith("raster"):
            pts = sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))
            assert pts > 0 or any("no spikes" in t.get_text() for t in ax.texts), ax.get_title()
    graph = _by_name(figs, "mushroom_body", "assembly_graph")
    assert not any(re.fullmatch(r"[EI]\d+", t.get_text()) for ax in graph.axes for t in ax.texts)
