"""``neurodsl analyze odourants DIR``: figures of an olfactory teacher run.

``odourant_report(DIR or DIR/teacher.nc, out_dir)`` reads ``teacher.nc`` and,
when present beside it, ``conditions.nc`` (the three dashboard trials written by
``runners.teacher.simulate_conditions``: odour, baseline, odour again with new
noise) and ``network_structure.npz`` (read with plain ``np.load``), and writes:

* ``input_rates.png``      histogram of mitral rates: observed (time-averaged per
                           channel and trial) and each odour's nominal rates;
* ``dashboard.png``        odour vs baseline (selectivity) and odour vs odour repeated
                           (reliability): rate scatter, rate distributions, rasters;
* ``rates_by_type.png``, ``cv_by_type.png``, ``fano_by_type.png``  teacher
                           distributions by cell type (E/I);
* ``connectivity.png``     recurrent weight matrix (post x pre, E then I; at most
                           ``max_neurons`` evenly spaced neurons shown);
* ``assembly_graph.png``   assemblies as nodes on a circle, edges = summed weights.

Run as ``python -m neurodsl.analysis.odourants DIR [OUT]`` (default OUT = DIR/figures).
Imports only numpy, xarray, matplotlib and neurodsl.analysis.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import xarray as xr

from .plots import (EI_COLORS, _figure, connectivity_matrix, cv_histogram, fano_histogram,
                    rate_histograms, save)
from .spikes import spike_events
from .stats import per_neuron_rates

__all__ = ["odourant_report", "condition_correlations", "load_run"]


def load_run(ds_or_path) -> tuple[xr.Dataset, xr.Dataset | None, dict | None]:
    """(teacher dataset, conditions dataset or None, structure arrays or None)."""
    if isinstance(ds_or_path, xr.Dataset):
        return ds_or_path, None, None
    p = Path(ds_or_path)
    folder = p if p.is_dir() else p.parent
    path = p / "teacher.nc" if p.is_dir() else p
    ds = xr.load_dataset(path)
    cond = xr.load_dataset(folder / "conditions.nc") if (folder / "conditions.nc").exists() else None
    struct = None
    if (folder / "network_structure.npz").exists():
        with np.load(folder / "network_structure.npz", allow_pickle=False) as z:
            struct = {k: z[k] for k in z.files}
    return ds, cond, struct


def condition_correlations(cond: xr.Dataset) -> dict[str, float]:
    """Pearson r of per-neuron rates: ``odour_vs_repeat`` (reliability) and
    ``odour_vs_baseline`` (selectivity: lower = more odour-specific), plus the mean
    absolute rate differences (Hz) of both pairs."""
    r = per_neuron_rates(cond).values  # (3, neuron): odour, baseline, repeat
    out = {}
    for name, (a, b) in {"odour_vs_repeat": (0, 2), "odour_vs_baseline": (0, 1)}.items():
        out[name] = float(np.corrcoef(r[a], r[b])[0, 1]) if r[a].std() and r[b].std() else float("nan")
        out[f"mean_abs_diff_{name}_hz"] = float(np.abs(r[a] - r[b]).mean())
    return out


def _input_rates(ds: xr.Dataset):
    fig, axes = _figure(figsize=(5.4, 3.6))
    ax = axes[0, 0]
    observed = ds["input_rate"].mean("time").values.ravel()
    nominal = ds["odour_rate"].values.ravel()
    edges = np.histogram_bin_edges(np.concatenate([observed, nominal]), bins=40)
    ax.hist(observed, bins=edges, alpha=0.6, color="#7d3c98", density=True,
            label=f"observed (mean {observed.mean():.1f} Hz)")
    ax.hist(nominal, bins=edges, alpha=0.5, color="#999999", density=True, label="odours' nominal rates")
    ax.set(xlabel="mitral rate (Hz)", ylabel="density", title="Input (mitral) firing rates")
    ax.legend(frameon=False, fontsize=8)
    return fig


_LABEL_COLORS = ["#c0392b", "#d68910", "#7d3c98", "#17a589", "#555555"]


def _groups(ds: xr.Dataset) -> list[tuple[str, np.ndarray, str]]:
    """(name, neuron mask, colour) of the cell groups present: the connectome's cell labels when the
    dataset has them (e.g. K / O of a real connectome), else the E/I types that occur."""
    if "cell_label" in ds.coords:
        lab = np.asarray(ds["cell_label"].values).astype(str)
        return [(g, lab == g, _LABEL_COLORS[k % len(_LABEL_COLORS)]) for k, g in enumerate(dict.fromkeys(lab))]
    ei = np.asarray(ds["ei"].values).astype(str)
    return [(g, ei == g, EI_COLORS.get(g, "#555555")) for g in ("E", "I") if (ei == g).any()]


def _raster(ax, ds, trial, n_show=300, title=""):
    tr, st, ne = spike_events(ds)
    n = ds.sizes["neuron"]
    active = np.unique(ne)  # neurons that fire in any dashboard trial: the rows of both rasters
    pool = active if 0 < len(active) < n else np.arange(n)
    shown = pool[np.unique(np.linspace(0, len(pool) - 1, min(len(pool), n_show)).astype(int))]
    row = np.full(n, -1)
    row[shown] = np.arange(len(shown))
    keep = (tr == trial) & (row[ne] >= 0)
    for g, mask, color in _groups(ds):
        if not mask[shown].any():
            continue
        sel = keep & mask[ne]
        ax.scatter(st[sel] * ds.attrs["dt_ms"], row[ne[sel]], s=float(np.clip(3000 / len(shown), 4, 60)),
                   marker="|", color=color, lw=1.0,
                   label=f"{g} ({int(mask[shown].sum())})")
    n_spikes = int(keep.sum())
    if n_spikes == 0:
        ax.text(0.5, 0.5, "no spikes in this trial", transform=ax.transAxes, ha="center", va="center",
                color="0.4")
    rate = int((tr == trial).sum()) / n / (float(ds.attrs["duration_ms"]) / 1000.0)  # over all n neurons
    which = "active in any condition" if len(pool) < n else "all"
    ax.set(xlabel="time (ms)", ylabel=f"neuron ({len(shown)} of {n}: {which})", ylim=(-0.5, len(shown) - 0.5),
           xlim=(0, float(ds.attrs["duration_ms"])),
           title=f"{title}: {n_spikes} spike{'s' if n_spikes != 1 else ''} (mean rate {rate:.2f} Hz)")


def _dashboard(cond: xr.Dataset):
    r = per_neuron_rates(cond).values
    cc = condition_correlations(cond)
    odour = str(cond["odour_name"].values[int(cond.attrs.get("dashboard_odour", 0))])
    pairs = [("baseline", 1, "selectivity (odour vs baseline)", cc["odour_vs_baseline"]),
             (f"{odour} repeated", 2, "reliability (odour vs repeat)", cc["odour_vs_repeat"])]
    fig, axes = _figure(3, 2, figsize=(10.0, 11.0))
    hi = max(float(r.max()), 1.0)
    for col, (other, j, what, rr) in enumerate(pairs):
        ax = axes[0, col]
        for g, m, color in _groups(cond):
            ax.scatter(r[0, m], r[j, m], s=8, alpha=0.6, color=color, edgecolors="none", label=f"{g} ({m.sum()})")
        ax.plot([0, hi], [0, hi], "k--", lw=1, label="identity")
        ax.set(xlabel=f"{odour} rate (Hz)", ylabel=f"{other} rate (Hz)", aspect="equal",
               title=f"{what}: r = {rr:.3f}")
        ax.legend(frameon=False, fontsize=8)
        ax = axes[1, col]
        edges = np.histogram_bin_edges(np.concatenate([r[0], r[j]]), bins=40)
        ax.hist(r[0], bins=edges, alpha=0.55, color="#c0392b", label=f"{odour} (mean {r[0].mean():.2f} Hz)")
        ax.hist(r[j], bins=edges, alpha=0.55, color="#555555", label=f"{other} (mean {r[j].mean():.2f} Hz)")
        ax.set(xlabel="rate (Hz)", ylabel="neurons", title="rate distributions", yscale="log")
        ax.legend(frameon=False, fontsize=8)
    _raster(axes[2, 0], cond, 1, title="baseline")
    _raster(axes[2, 1], cond, 2, title=f"{odour} repeated")
    axes[2, 1].legend(frameon=False, fontsize=8, loc="upper right", markerscale=2)
    fig.suptitle(f"odourant dashboard: {odour} ({cond.attrs['duration_ms']:.0f} ms per condition)")
    return fig


def _subset_matrix(struct: dict, max_neurons: int):
    ei = struct["cell_type"].astype(str)
    n = len(ei)
    keep = np.unique(np.linspace(0, n - 1, min(n, max_neurons)).astype(int))
    pos = np.full(n, -1)
    pos[keep] = np.arange(len(keep))
    pre, post, w = struct["rec_pre"], struct["rec_post"], struct["rec_weight"]
    sel = (pos[pre] >= 0) & (pos[post] >= 0)
    W = np.zeros((len(keep), len(keep)), np.float32)
    np.add.at(W, (pos[post[sel]], pos[pre[sel]]), w[sel])
    return W, ei[keep]


def _node_names(struct: dict, nodes) -> list[str]:
    """Names of (assembly, cell type) nodes: the connectome's cell labels where the structure records them
    (``meta.assembly_labels``, e.g. K / O), else cell type and assembly index (E0, I3, ...)."""
    try:
        labels = json.loads(str(struct["meta"])).get("assembly_labels") if "meta" in struct else None
    except ValueError:
        labels = None
    if labels and all(0 <= a < len(labels) for a, _ in nodes):
        types = {e for _, e in nodes}
        return [f"{labels[a]} ({e})" if len(types) > 1 else str(labels[a]) for a, e in nodes]
    return [f"{e}{a}" for a, e in nodes]


def _assembly_graph(struct: dict):
    ei = struct["cell_type"].astype(str)
    asm = struct["assembly"] if "assembly" in struct else np.zeros(len(ei), int)
    nodes = sorted({(int(a), e) for a, e in zip(asm, ei)}, key=lambda x: (x[1], x[0]))
    index = {k: i for i, k in enumerate(nodes)}
    node_of = np.array([index[(int(a), e)] for a, e in zip(asm, ei)])
    k = len(nodes)
    A = np.zeros((k, k))
    np.add.at(A, (node_of[struct["rec_pre"]], node_of[struct["rec_post"]]), struct["rec_weight"])
    size = np.bincount(node_of, minlength=k)
    A = A / np.maximum(size[:, None] * size[None, :], 1)  # mean weight per neuron pair
    ang = 2 * np.pi * np.arange(k) / max(k, 1)
    xy = np.c_[np.cos(ang), np.sin(ang)]
    fig, axes = _figure(figsize=(6.0, 6.0))
    ax = axes[0, 0]
    vmax = np.abs(A[~np.eye(k, dtype=bool)]).max() if k > 1 else 1.0
    for i in range(k):
        for j in range(k):
            if i != j and A[i, j] != 0 and vmax > 0:
                ax.plot(*xy[[i, j]].T, color="#c0392b" if A[i, j] > 0 else "#2471a3",
                        lw=2.5 * abs(A[i, j]) / vmax, alpha=0.5)
    names = _node_names(struct, nodes)
    for i, (a, e) in enumerate(nodes):
        self_w = A[i, i]
        ax.scatter(*xy[i], s=60 + 300 * size[i] / size.max(), color=EI_COLORS[e], zorder=3,
                   edgecolors="k", linewidths=0.5 + 2 * abs(self_w) / max(np.abs(np.diag(A)).max(), 1e-12))
        ax.annotate(f"{names[i]}\n(n={size[i]})", xy[i] * 1.16, ha="center", va="center", fontsize=7)
    ax.set(aspect="equal", xticks=[], yticks=[], xlim=(-1.35, 1.35), ylim=(-1.35, 1.35),
           title="cell groups (node size: cells; edges: mean weight between groups,\n"
                 "red excitatory, blue inhibitory; outline: mean weight within)")
    ax.spines[["left", "bottom"]].set_visible(False)
    return fig


def odourant_report(ds_or_path, out_dir, max_neurons: int = 800) -> list[Path]:
    """Write the odourant figures (see the module docstring) into ``out_dir``; returns their paths.

    ``ds_or_path``: a teacher Dataset, ``DIR/teacher.nc`` or ``DIR``; the dashboard and
    the structure figures need ``conditions.nc`` / ``network_structure.npz`` in DIR
    (they are skipped, with a note on stderr, when absent).
    """
    ds, cond, struct = load_run(ds_or_path)
    out = Path(out_dir)
    paths = [save(_input_rates(ds), out / "input_rates.png"),
             save(rate_histograms(ds), out / "rates_by_type.png"),
             save(cv_histogram(ds), out / "cv_by_type.png"),
             save(fano_histogram(ds, bin_ms=min(100.0, ds.attrs["duration_ms"] / 2)), out / "fano_by_type.png")]
    if cond is not None:
        paths.append(save(_dashboard(cond), out / "dashboard.png"))
    else:
        print("odourants: no conditions.nc, dashboard skipped (runners.teacher.simulate_conditions)",
              file=sys.stderr)
    if struct is not None:
        W, ei = _subset_matrix(struct, max_neurons)
        paths.append(save(connectivity_matrix(W, ei, units="weight (x g_bar)"), out / "connectivity.png"))
        paths.append(save(_assembly_graph(struct), out / "assembly_graph.png"))
    else:
        print("odourants: no network_structure.npz, connectivity figures skipped", file=sys.stderr)
    return paths


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        print("usage: python -m neurodsl.analysis.odourants DIR [OUT]", file=sys.stderr)
        raise SystemExit(2)
    out = argv[1] if len(argv) > 1 else Path(argv[0]) / "figures"
    for p in odourant_report(argv[0], out):
        print(p)


if __name__ == "__main__":
    main()
