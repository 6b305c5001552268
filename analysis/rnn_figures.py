"""Figures of an RNN fit, drawn from ``fit.nc`` (see :mod:`neurodsl.analysis.rnn_report`) and the log.

Every function returns a matplotlib Figure (Agg, no pyplot); :func:`make_all`
writes them all as PNG and returns the paths.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from .plots import EI_COLORS, _figure, psth_panels, save
from .psth import smooth_time


def training_curves(log: list) -> object:
    """Losses, validation correlation, learning rate; the best epoch marked in each panel."""
    fig, ax = _figure(2, 2, figsize=(10, 6.5))
    ep = np.array([e["epoch"] for e in log])
    get = lambda k: np.array([e.get(k, np.nan) for e in log], float)  # noqa: E731
    r = get("val_correlation")
    best = int(ep[np.nanargmax(r)]) if len(r) and np.isfinite(r).any() else None
    for k in ("train_loss", "val_loss"):
        ax[0, 0].plot(ep, get(k), label=k)
    ax[0, 0].set(title="total loss", xlabel="epoch", ylabel="loss",
                 yscale="log" if (get("train_loss") > 0).all() else "linear")
    for k in ("L_neuron", "L_trial", "L_reg", "L_obs"):
        if np.isfinite(get(k)).any():
            ax[0, 1].plot(ep, np.abs(get(k)), label=k)
    ax[0, 1].set(title="loss terms", xlabel="epoch", ylabel="|loss term|", yscale="log")
    ax[1, 0].plot(ep, r, color="k")
    ax[1, 0].set(title="validation PSTH correlation", xlabel="epoch", ylabel="mean r")
    ax[1, 1].plot(ep, get("learning_rate"), color="C2")
    ax[1, 1].set(title="learning rate", xlabel="epoch", ylabel="learning rate", yscale="log")
    for a in ax.flat:
        if best is not None:
            a.axvline(best, color="C3", ls=":", lw=1, label=f"best epoch {best}")
        a.legend(frameon=False, fontsize=7)
    return fig


def correlation_summary(fit: xr.Dataset):
    """Histogram of per-neuron r by E/I and r vs mean rate (ceilings as grey ticks)."""
    fig, ax = _figure(1, 2, figsize=(10, 3.8))
    ei = fit["ei"].values.astype(str)
    r = fit["r_pooled"].values
    bins = np.linspace(min(-0.1, np.nanmin(r)), 1, 21)
    for t in ("E", "I"):
        ax[0, 0].hist(r[ei == t], bins=bins, color=EI_COLORS[t], alpha=0.6, label=t)
        ax[0, 1].scatter(fit["mean_rate_target"].values[ei == t], r[ei == t], color=EI_COLORS[t], label=t)
    ax[0, 0].axvline(np.nanmean(fit["ceiling_pooled"].values), color="grey", ls="--", label="mean ceiling")
    ax[0, 0].set(xlabel="validation PSTH r", ylabel="neurons", title="per-neuron correlation")
    ax[0, 1].scatter(fit["mean_rate_target"].values, fit["ceiling_pooled"].values, marker="_", color="grey",
                     s=80, label="ceiling")
    ax[0, 1].set(xlabel="mean rate (sp/s)", ylabel="r", title="correlation vs mean rate")
    for a in ax.flat:
        a.legend(frameon=False, fontsize=7)
    return fig


def best_worst_psths(fit: xr.Dataset, k: int = 4):
    """Pooled validation PSTHs of the k best and k worst neurons (model dashed)."""
    r = fit["r_pooled"].values
    order = np.argsort(np.where(np.isfinite(r), r, -np.inf))
    idx = list(order[::-1][:k]) + [i for i in order[:k] if i not in order[::-1][:k]]
    fig, ax = _figure(2, k, figsize=(3 * k, 5))
    v = fit["valid"].values[..., None]
    pm = np.nanmean(np.where(v, fit["rate_model"].values, np.nan), 0)
    pt = np.nanmean(np.where(v, fit["rate_target"].values, np.nan), 0)
    t = fit["time"].values
    for a, j in zip(ax.flat, idx):
        c = EI_COLORS.get(str(fit["ei"].values[j]), "k")
        a.plot(t, pt[:, j], color=c, lw=1.2, label="target")
        a.plot(t, pm[:, j], color="k", ls="--", lw=1.2, label="model")
        a.set_title(f"neuron {fit['neuron'].values[j]} ({fit['ei'].values[j]}): r = {r[j]:.2f}", fontsize=9)
    for a in ax.flat[len(idx):]:
        a.set_visible(False)
    ax[0, 0].legend(frameon=False, fontsize=7)
    fig.supxlabel("time (ms)", fontsize=9)
    fig.supylabel("rate (sp/s)", fontsize=9)
    fig.suptitle("validation PSTHs (mean over trials) of the best (top) and worst (bottom) neurons; "
                 "r: pooled PSTH correlation", fontsize=10)
    return fig


def weight_heatmaps(fit: xr.Dataset):
    """W_rec (rows post, columns pre) and W_in, units sorted E then I."""
    order = np.argsort(fit["unit_ei"].values != "E", kind="stable")
    fig, ax = _figure(1, 2, figsize=(11, 4.5))
    w = fit["W_rec"].values[np.ix_(order, order)]
    lim = np.abs(w).max() or 1.0
    im = ax[0, 0].imshow(w, cmap="RdBu_r", vmin=-lim, vmax=lim)
    n_e = int((fit["unit_ei"].values == "E").sum())
    for a in (ax[0, 0].axhline, ax[0, 0].axvline):
        a(n_e - 0.5, color="k", lw=0.8)
    ax[0, 0].set(title="W_rec (sorted E | I)", xlabel="presynaptic unit", ylabel="postsynaptic unit")
    fig.colorbar(im, ax=ax[0, 0], shrink=0.8, label="recurrent weight (a.u.)")
    wi = fit["W_in"].values[order]
    lim = np.abs(wi).max() or 1.0
    im = ax[0, 1].imshow(wi, cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
    ax[0, 1].axhline(n_e - 0.5, color="k", lw=0.8)
    ax[0, 1].set(title="W_in", xlabel="embedding / input", ylabel="unit (sorted E | I)")
    fig.colorbar(im, ax=ax[0, 1], shrink=0.8, label="input weight (a.u.)")
    return fig


def h0_histogram(fit: xr.Dataset):
    fig, ax = _figure()
    h0, ei = fit["h0"].values, fit["unit_ei"].values
    bins = np.histogram_bin_edges(h0, 15)
    for t in ("E", "I"):
        ax[0, 0].hist(h0[ei == t], bins=bins, color=EI_COLORS[t], alpha=0.6, label=t)
    ax[0, 0].set(xlabel="h0", ylabel="units", title="learned initial state")
    ax[0, 0].legend(frameon=False)
    return fig


def attention_patterns(fit: xr.Dataset):
    """Attention weights per head (query row, key column); tokens constant in every trial left out."""
    att = fit["attention"].values
    names = np.array([str(x) for x in fit["input_query"].values])
    keep = ~np.asarray(fit["input_constant"].values, bool) if "input_constant" in fit.coords else \
        np.ones(len(names), bool)
    att, names = att[:, keep][:, :, keep], names[keep]
    h = att.shape[0]
    fig, ax = _figure(1, h, figsize=(4.2 * h, 4.8))
    for i, a in enumerate(ax.flat):
        im = a.imshow(att[i], cmap="viridis", vmin=0)
        a.set_title(f"head {i + 1}", fontsize=9)
        a.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        a.set_yticks(range(len(names)), names if i == 0 else [""] * len(names), fontsize=6)
        a.set_xlabel("key (input token)", fontsize=8)
        a.set_ylabel("query (input token)", fontsize=8)
        fig.colorbar(im, ax=a, shrink=0.7, label="attention weight")
    dropped = int((~keep).sum())
    note = f"; {dropped} constant token(s) not shown" if dropped else ""
    fig.suptitle(f"attention weights (softmax over keys), mean over trials and bins{note}", fontsize=10)
    return fig


def _by_first_key(fit: xr.Dataset, da: xr.DataArray, max_groups: int = 6) -> xr.DataArray:
    """``da`` over ``condition`` averaged within each value of the first condition key (e.g. location=1..4),
    or (one key, or nothing to group) the first ``max_groups`` conditions labelled by their values."""
    names = [str(x) for x in fit["condition_name"].values] if "condition_name" in fit.coords else \
        [f"condition {c}" for c in fit["condition"].values]
    first = [n.split("|")[0] for n in names]
    if all("=" in k for k in first) and 1 < len(set(first)) < len(first):
        dim = first[0].split("=")[0]
        vals = [k.split("=", 1)[1] for k in first]
        out = da.assign_coords({dim: ("condition", vals)}).groupby(dim).mean("condition")
        return out.isel({dim: slice(0, max_groups)})
    out = da.assign_coords(condition=[n.replace("|", ", ") for n in names])
    return out.dropna("condition", how="all").isel(condition=slice(0, max_groups))


def pca_figures(fit: xr.Dataset, smooth_ms: float = 150.0):
    """PC1-3 over time (target solid, model dashed, condition-averaged) and PC1 vs PC2 per group of conditions."""
    k = fit.sizes["pc"]
    fig, ax = _figure(1, k + 1, figsize=(3.3 * k + 5.0, 3.8), width_ratios=[1] * k + [1.6])
    t = fit["time"].values
    for i in range(k):
        ax[0, i].plot(t, np.nanmean(fit["pca_target"].values[i], 0), color="k", label="data")
        ax[0, i].plot(t, np.nanmean(fit["pca_model"].values[i], 0), color="C3", ls="--", label="model")
        evr = float(fit["pca_explained_variance_ratio"].values[i])
        ax[0, i].set(title=f"PC{i + 1} ({100 * evr:.0f}% var)", xlabel="time (ms)",
                     ylabel="projection (z-scored rate)" if i == 0 else f"PC{i + 1}")
    ax[0, 0].legend(frameon=False, fontsize=7)
    a = ax[0, k]
    if k >= 2:
        pt, pm = (smooth_time(_by_first_key(fit, fit[v].isel(pc=[0, 1])), smooth_ms)
                  for v in ("pca_target", "pca_model"))
        dim = [d for d in pt.dims if d not in ("pc", "time")][0]
        for c, lab in enumerate(pt[dim].values):
            col = f"C{c % 10}"
            x, y = pt.isel({dim: c}).values
            a.plot(x, y, color=col, lw=1.6, label=str(lab) if "=" in str(lab) else f"{dim}={lab}")
            a.plot(x[:1], y[:1], "o", color=col, ms=5)
            xm, ym = pm.isel({dim: c}).values
            a.plot(xm, ym, color=col, lw=1.2, ls="--")
        a.legend(frameon=False, fontsize=7, loc="best", title="o: start", title_fontsize=7)
        a.set(xlabel="PC1", ylabel="PC2", title="state space: data solid, model dashed")
        a.text(0.01, 0.01, f"Gaussian {smooth_ms:g} ms for display", transform=a.transAxes, fontsize=7,
               color="0.4")
    else:
        a.set_visible(False)
    fig.suptitle("PCA of the validation PSTHs (smoothed, z-scored per neuron); model projected on the data's PCs",
                 fontsize=10)
    return fig


def fano_comparison(fit: xr.Dataset):
    """Per-neuron Fano factor of the model against the recording: sampled counts when the fit has an
    observation model (``metric_observation``), else rate x bin, and the figure says it is noise-free."""
    obs = str(fit.attrs.get("metric_observation", "none"))
    fig, ax = _figure(figsize=(5.6, 4.4))
    ei = fit["ei"].values.astype(str)
    fm, ft = fit["fano_model"].values, fit["fano_target"].values
    for t in ("E", "I"):
        if (ei == t).any():
            ax[0, 0].scatter(ft[ei == t], np.maximum(fm[ei == t], 1e-6), color=EI_COLORS[t], label=t)
    ok = np.isfinite(fm) & np.isfinite(ft) & (fm > 0) & (ft > 0)
    lo = min(fm[ok].min(), ft[ok].min()) if ok.any() else 1e-2
    hi = max(fm[ok].max(), ft[ok].max()) if ok.any() else 10
    ax[0, 0].plot([lo, hi], [lo, hi], color="grey", ls=":", label="identity")
    ylabel = f"Fano factor, model ({obs}-sampled counts)" if obs != "none" else "Fano factor, model (rate x bin)"
    scale = "log" if hi > 10 * lo else "linear"   # a narrow range on log axes crowds the tick labels
    ax[0, 0].set(xscale=scale, yscale=scale, xlabel="Fano factor, recorded counts (dimensionless)",
                 ylabel=f"{ylabel}\n(dimensionless)", title="Fano factor across trials of a condition")
    ax[0, 0].legend(frameon=False, fontsize=8)
    note = (f"Model counts sampled from its {obs} observation model on the rates with process noise\n"
            "(model.observation), compared with the recorded counts." if obs != "none" else
            "No observation model (model.observation: none): counts of a noise-free rate model (rate x bin,\n"
            "process noise only, no spiking noise), so its Fano factor lies far below the recording's.")
    fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=7.5, color="0.25")
    fig.get_layout_engine().set(rect=(0, 0.09, 1, 0.91))
    return fig


def condition_psths(fit: xr.Dataset, n: int = 4, smooth_ms: float = 50.0):
    """Validation PSTHs of the n neurons best fitted across conditions, averaged per value of the first
    condition key; the titles quote the report's condition-resolved r (``r_condition``)."""
    r = fit["r_condition"].values
    idx = list(np.argsort(np.where(np.isfinite(r), -r, np.inf))[:n])
    pm, pt = (smooth_time(_by_first_key(fit, fit[v]), smooth_ms) for v in ("psth_model", "psth_target"))
    fig = psth_panels(pm, pt, neurons=idx, ncols=min(n, 4), r=r, r_label="condition r")
    fig.suptitle(f"validation PSTHs, target (solid) vs model (dashed), Gaussian {smooth_ms:g} ms for display; "
                 "condition r (unsmoothed, all conditions) as in training_report.md", fontsize=9)
    return fig


def make_all(fit: xr.Dataset, log: list, fig_dir: Path) -> list[Path]:
    """Write every figure that applies (PNG) and return their paths."""
    fig_dir = Path(fig_dir)
    jobs = {"training_curves": lambda: training_curves(log), "correlations": lambda: correlation_summary(fit),
            "psth_best_worst": lambda: best_worst_psths(fit), "weights": lambda: weight_heatmaps(fit),
            "h0": lambda: h0_histogram(fit), "pca": lambda: pca_figures(fit), "fano": lambda: fano_comparison(fit),
            "psth_conditions": lambda: condition_psths(fit)}
    if "attention" in fit:
        jobs["attention"] = lambda: attention_patterns(fit)
    return [save(make(), fig_dir / f"{name}.png") for name, make in jobs.items() if log or name != "training_curves"]
