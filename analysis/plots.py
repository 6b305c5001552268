"""Figures for spiking and rate datasets.  Every function returns a Figure.

Figures are built with the object-oriented API on an Agg canvas (no pyplot,
no global figure registry, nothing is ever shown); write them with
:func:`save`.  E cells are drawn in red, I cells in blue.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from .psth import as_rate, psth_correlation
from .spikes import duration_ms, n_neurons, spike_events
from .stats import cv_isi, per_neuron_fano, per_neuron_rates

__all__ = ["raster", "rate_histograms", "cv_histogram", "fano_histogram", "rate_scatter",
           "connectivity_matrix", "pca_trajectories", "psth_panels", "save"]

EI_COLORS = {"E": "#c0392b", "I": "#2471a3"}
_OTHER = "#555555"


def _figure(nrows=1, ncols=1, figsize=(5.0, 3.6), **kw):
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    for ax in axes.flat:
        ax.spines[["top", "right"]].set_visible(False)
    return fig, axes


def _ei_labels(obj) -> np.ndarray | None:
    if isinstance(obj, (xr.Dataset, xr.DataArray)) and "ei" in obj.coords:
        return np.asarray(obj["ei"].values).astype(str)
    return None


def save(fig: Figure, path, dpi: int = 120) -> Path:
    """Write ``fig`` as PNG (``dpi`` 120) creating parent dirs, close it, return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, format="png")
    plt = sys.modules.get("matplotlib.pyplot")  # close only if pyplot manages it
    if plt is not None:
        plt.close(fig)
    return path


def raster(ds: xr.Dataset, neurons=None, trial: int = 0, t_range=None) -> Figure:
    """Spike raster of one trial with the population rate of the shown cells below.

    ``neurons``: None (all), an int n (first n) or a sequence of neuron indices;
    ``t_range``: (t0, t1) in ms (default the whole trial).
    """
    n_all = n_neurons(ds)
    idx = (np.arange(n_all) if neurons is None else np.arange(min(int(neurons), n_all))
           if np.isscalar(neurons) else np.asarray(neurons, dtype=int))
    t0, t1 = (0.0, duration_ms(ds)) if t_range is None else map(float, t_range)
    tr, st, ne = spike_events(ds)
    t = st * float(ds.attrs["dt_ms"])
    row = np.full(n_all, -1)
    row[idx] = np.arange(len(idx))
    keep = (tr == trial) & (row[ne] >= 0) & (t >= t0) & (t < t1)
    t, ne = t[keep], ne[keep]
    ei = _ei_labels(ds)
    fig, axes = _figure(2, 1, figsize=(7.0, 4.8), sharex=True,
                        gridspec_kw={"height_ratios": [3, 1]})
    ax, axr = axes[:, 0]
    groups = ([("all", np.ones(n_all, bool))] if ei is None
              else [(g, ei == g) for g in np.unique(ei)])
    n_bins = max(1, int(np.ceil((t1 - t0) / max(float(ds.attrs["dt_ms"]), (t1 - t0) / 200.0))))
    edges = np.linspace(t0, t1, n_bins + 1)
    width = edges[1] - edges[0]
    size = float(np.clip(4000.0 / max(len(idx), 1), 1.0, 30.0))
    for g, mask in groups:
        n_cells = int(mask[idx].sum())
        if n_cells == 0:
            continue
        sel = mask[ne]
        color = EI_COLORS.get(g, _OTHER)
        ax.scatter(t[sel], row[ne[sel]], s=size, marker="|", color=color, linewidths=0.8,
                   label=f"{g} ({n_cells})" if ei is not None else None)
        counts, _ = np.histogram(t[sel], edges)
        axr.plot(edges[:-1] + width / 2, counts / n_cells / (width / 1000.0), color=color, lw=1)
    ax.set(ylabel="neuron", ylim=(-0.5, len(idx) - 0.5), title=f"trial {trial}")
    if ei is not None:
        ax.legend(loc="upper right", markerscale=2, frameon=False)
    axr.set(xlabel="time (ms)", ylabel="rate (Hz)", xlim=(t0, t1))
    return fig


def _hist_by_ei(values: np.ndarray, ei, xlabel: str, title: str, ref=None, bins=30) -> Figure:
    fig, axes = _figure()
    ax = axes[0, 0]
    finite = np.isfinite(values)
    edges = np.histogram_bin_edges(values[finite], bins=bins) if finite.any() else bins
    groups = [("all", np.ones(values.shape, bool))] if ei is None else \
        [(g, ei == g) for g in np.unique(ei)]
    for g, mask in groups:
        v = values[mask & finite]
        lab = f"{g} (n={v.size}, mean {np.mean(v):.2f})" if v.size else f"{g} (n=0)"
        ax.hist(v, bins=edges, color=EI_COLORS.get(g, _OTHER), alpha=0.55, label=lab)
    if ref is not None:
        ax.axvline(ref, color="k", ls="--", lw=1)
    ax.set(xlabel=xlabel, ylabel="neurons", title=title)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(frameon=False, fontsize=8)
    return fig


def rate_histograms(ds: xr.Dataset, bins=30) -> Figure:
    """Histogram of trial-averaged per-neuron firing rates (Hz) by E/I."""
    r = per_neuron_rates(ds).mean("trial")
    return _hist_by_ei(r.values, _ei_labels(ds), "firing rate (Hz)", "Firing rates", bins=bins)


def cv_histogram(ds_or_cv, bins=30) -> Figure:
    """Histogram of CV of ISIs by E/I (dataset, or a ``cv_isi`` DataArray); dashed: Poisson."""
    cv = cv_isi(ds_or_cv) if isinstance(ds_or_cv, xr.Dataset) else ds_or_cv
    return _hist_by_ei(np.asarray(cv, float), _ei_labels(cv), "CV of ISI", "ISI irregularity",
                       ref=1.0, bins=bins)


def fano_histogram(ds_or_fano, bin_ms: float = 100.0, bins=30) -> Figure:
    """Histogram of per-neuron Fano factors (:func:`~neurodsl.analysis.stats.per_neuron_fano`
    of a dataset, or a given DataArray) by E/I; dashed line: Poisson (1)."""
    fano = per_neuron_fano(ds_or_fano, bin_ms) if isinstance(ds_or_fano, xr.Dataset) \
        else ds_or_fano
    bin_ms = float(getattr(fano, "attrs", {}).get("bin_ms", bin_ms))
    return _hist_by_ei(np.asarray(fano, float), _ei_labels(fano),
                       f"Fano factor ({bin_ms:g} ms counts)", "Count variability",
                       ref=1.0, bins=bins)


def rate_scatter(a, b, label_a: str = "data", label_b: str = "model",
                 units: str = "Hz") -> Figure:
    """Scatter of ``b`` vs ``a`` (same shape), identity line, Pearson r in the title."""
    x, y = np.asarray(a, float).ravel(), np.asarray(b, float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"shapes differ: {np.shape(a)} vs {np.shape(b)}")
    ok = np.isfinite(x) & np.isfinite(y)
    r = np.corrcoef(x[ok], y[ok])[0, 1] if ok.sum() > 1 else np.nan
    fig, axes = _figure(figsize=(4.2, 4.0))
    ax = axes[0, 0]
    ei = _ei_labels(a)
    colors = ([EI_COLORS.get(e, _OTHER) for e in ei[ok]]
              if ei is not None and ei.shape == x.shape else _OTHER)
    ax.scatter(x[ok], y[ok], s=10, c=colors, alpha=0.7, edgecolors="none")
    lo = min(x[ok].min(initial=0), y[ok].min(initial=0))
    hi = max(x[ok].max(initial=1), y[ok].max(initial=1))
    ax.plot([lo, hi], [lo, hi], color="k", lw=1, ls="--", label="identity")
    if not isinstance(colors, str):
        handles = [Line2D([], [], ls="", marker="o", color=EI_COLORS.get(g, _OTHER), label=g)
                   for g in np.unique(ei[ok])]
        ax.legend(handles=handles, frameon=False, loc="upper left")
    ax.set(xlabel=f"{label_a} ({units})", ylabel=f"{label_b} ({units})",
           title=f"{label_b} vs {label_a}: r = {r:.3f}", aspect="equal")
    return fig


def connectivity_matrix(W, ei=None, xlabel="presynaptic neuron",
                        ylabel="postsynaptic neuron", units="weight") -> Figure:
    """Weight matrix ``W`` (rows: postsynaptic, cols: presynaptic) sorted E-then-I.

    Diverging colormap centred at 0 (red excitatory, blue inhibitory), thin
    lines at the E/I boundary.  ``ei``: labels per neuron ("E"/"I"), or taken
    from a DataArray's ``ei`` coord.
    """
    w = W.toarray() if hasattr(W, "toarray") else np.asarray(W, dtype=float)
    if ei is None:
        ei = _ei_labels(W)
    fig, axes = _figure(figsize=(5.4, 4.6))
    ax = axes[0, 0]
    if ei is not None:
        ei = np.asarray(ei).astype(str)
        order = np.argsort(ei != "E", kind="stable")
        w = w[np.ix_(order, order)] if w.shape[0] == w.shape[1] else w
        n_e = int((ei == "E").sum())
    vmax = float(np.nanmax(np.abs(w))) or 1.0
    im = ax.imshow(w, cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest",
                   aspect="auto")
    if ei is not None and 0 < n_e < len(ei):
        for f in (ax.axhline, ax.axvline):
            f(n_e - 0.5, color="k", lw=0.6)
        ax.set_title(f"connectivity (E: {n_e}, I: {len(ei) - n_e})")
    fig.colorbar(im, ax=ax, label=units, shrink=0.85)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    return fig


def _series(da: xr.DataArray, along: str):
    """(label, 1-D values) for every combination of the dims other than ``along``."""
    other = [d for d in da.dims if d != along]
    da = da.transpose(*other, along)
    out = []
    for ix in np.ndindex(*[da.sizes[d] for d in other]):
        lab = ", ".join((str(da[d].values[i]) if "=" in str(da[d].values[i]) else f"{d}={da[d].values[i]}")
                        if d in da.coords else f"{d}={i}" for d, i in zip(other, ix))
        out.append((lab, np.asarray(da.values[ix], float)))
    return out


def pca_trajectories(pca_ds: xr.Dataset, pcs=(1, 2), model=None) -> Figure:
    """Trajectories in the plane of two PCs (1-based), one colour per condition.

    Circles mark the start, squares the end.  ``model``: optional projection
    (e.g. from :func:`~neurodsl.analysis.pca.project`) drawn dashed.
    """
    fig, axes = _figure(figsize=(5.0, 4.4))
    ax = axes[0, 0]
    pa, pb = pcs
    sets = [(pca_ds["projection"], "-", "")]
    if model is not None:
        sets.append((model, "--", " (model)"))
    n_traj = 0
    for proj, ls, suffix in sets:
        xs = _series(proj.sel(pc=pa), "time")
        ys = _series(proj.sel(pc=pb), "time")
        n_traj += len(xs)
        colors = [f"C{i % 10}" for i in range(len(xs))]
        for (lab, x), (_, y), c in zip(xs, ys, colors):
            ax.plot(x, y, ls=ls, color=c, lw=1.4, label=(lab or "trajectory") + suffix)
            ax.plot(x[:1], y[:1], "o", color=c, ms=4)
            ax.plot(x[-1:], y[-1:], "s", color=c, ms=4)
    evr = pca_ds["explained_variance_ratio"]
    ax.set(xlabel=f"PC{pa} ({100 * float(evr.sel(pc=pa)):.1f}% var)",
           ylabel=f"PC{pb} ({100 * float(evr.sel(pc=pb)):.1f}% var)",
           title="population trajectories")
    if n_traj <= 12:
        ax.legend(frameon=False, fontsize=7)
    return fig


def psth_panels(model, target, neurons=None, ncols: int = 4, r=None, r_label: str = "r") -> Figure:
    """One panel per neuron: target PSTH solid, model dashed, colour per condition.

    ``model``/``target``: PSTHs ``(*conditions, time, neuron)`` in sp/s;
    ``neurons``: positional indices (default the first 8).  Panel titles give
    the per-neuron ``r``: by default Pearson r of what is drawn (conditions
    concatenated along time); pass ``r`` (one value per neuron, positional) to quote
    a value computed elsewhere (e.g. a report's), named ``r_label``.
    """
    m, t = as_rate(model), as_rate(target)
    idx = list(range(min(8, t.sizes["neuron"]))) if neurons is None else list(neurons)
    r = psth_correlation(m, t)["r"].values if r is None else np.asarray(r, float)
    nrow = int(np.ceil(len(idx) / ncols))
    ncol = min(ncols, len(idx))
    fig, axes = _figure(nrow, ncol, figsize=(3.0 * ncol, 2.4 * nrow + 0.6))
    time = np.asarray(t["time"].values, float) if "time" in t.coords else np.arange(t.sizes["time"])
    n_lines = 0
    for k, ax in enumerate(axes.flat):
        if k >= len(idx):
            ax.set_visible(False)
            continue
        j = idx[k]
        pairs = list(zip(_series(t.isel(neuron=j), "time"), _series(m.isel(neuron=j), "time")))
        n_lines = len(pairs)
        for c, ((lab, yt), (_, ym)) in enumerate(pairs):
            ax.plot(time, yt, color=f"C{c % 10}", lw=1.0, alpha=0.8, label=lab or "target")
            ax.plot(time, ym, color=f"C{c % 10}", lw=2.0, ls="--")
        ax.set_title(f"neuron {t['neuron'].values[j] if 'neuron' in t.coords else j}: "
                     f"{r_label} = {r[j]:.2f}", fontsize=9)
        ax.set_xlim(time[0], time[-1])
    if 1 < n_lines <= 8:
        axes.flat[0].legend(frameon=False, fontsize=6)
    fig.supxlabel("time (ms)", fontsize=9)
    fig.supylabel("rate (sp/s)", fontsize=9)
    fig.suptitle("PSTHs: target (solid) vs model (dashed)", fontsize=10)
    return fig
