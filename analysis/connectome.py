"""Connectome statistics and figures (a ``network_structure.npz`` or a NetworkStructure in, numbers/figures out).

* :func:`structure_stats`: per pre->post pair (``EE`` = E->E, ``EI`` = E->I, ...,
  ``ff_E`` / ``ff_I`` = input->E/I) the synapse count, connection probability
  (overall, within and between assemblies), weight magnitude mean/std and mean
  in/out degree.
* :func:`degrees`, :func:`degree_distributions`, :func:`connectome_matrix`,
  :func:`assembly_graph`: figures (matplotlib only, object-oriented API).
* :func:`assembly_coactivation`: activity statistic of a spiking dataset given
  assembly labels.
* :func:`grid_score_maps`: heatmaps of a grid search result (2-D slices through the best point).
* :func:`analyse_structure`: all of the above for one structure, written to a folder.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from neurodsl.io.structure import NetworkStructure, load_structure

from .plots import EI_COLORS, _figure, connectivity_matrix, save
from .spikes import bin_spikes

__all__ = ["structure_stats", "degrees", "degree_distributions", "connectome_matrix", "assembly_graph",
           "assembly_coactivation", "grid_score_maps", "analyse_structure"]

PAIRS = ("EE", "EI", "IE", "II", "ff_E", "ff_I")


def _as_structure(s) -> NetworkStructure:
    return s if isinstance(s, NetworkStructure) else load_structure(s)


def _pair_edges(s: NetworkStructure, pair: str):
    """(pre index, post index, weight, pre types' size, pre mask over its index space, post mask)."""
    post_t = pair[-1]
    post_mask = s.cell_type == post_t
    if pair.startswith("ff"):
        m = post_mask[s.ff_post]
        return s.ff_pre[m], s.ff_post[m], s.ff_weight[m], np.ones(s.n_inputs, bool), post_mask
    pre_mask = s.cell_type == pair[0]
    m = pre_mask[s.rec_pre] & post_mask[s.rec_post]
    return s.rec_pre[m], s.rec_post[m], s.rec_weight[m], pre_mask, post_mask


def structure_stats(s) -> xr.Dataset:
    """Per-pair connectivity statistics (dim ``pair``); probabilities exclude self-pairs for EE/II."""
    s = _as_structure(s)
    lab = s.assembly if s.assembly is not None else np.full(s.n, -1)
    out = {k: [] for k in ("n_synapses", "p", "p_within", "p_between", "mean_weight", "std_weight",
                           "mean_in_degree", "mean_out_degree")}
    for pair in PAIRS:
        pre, post, w, pre_mask, post_mask = _pair_edges(s, pair)
        n_pre, n_post = int(pre_mask.sum()), int(post_mask.sum())
        same_type = pair in ("EE", "II")
        possible = n_pre * n_post - (n_post if same_type else 0)
        p_within = p_between = np.nan
        if not pair.startswith("ff") and (lab >= 0).any():
            a_pre, a_post = lab[pre_mask], lab[post_mask]
            ks = np.unique(np.concatenate([a_pre, a_post]))
            ks = ks[ks >= 0]
            n_within = sum(int((a_pre == k).sum()) * int((a_post == k).sum()) for k in ks)
            n_within -= int((a_post >= 0).sum()) if same_type else 0
            n_between = int(((a_pre >= 0).sum()) * ((a_post >= 0).sum())) - n_within - \
                (int((a_post >= 0).sum()) if same_type else 0)
            same = (lab[pre] == lab[post]) & (lab[pre] >= 0)
            diff = (lab[pre] != lab[post]) & (lab[pre] >= 0) & (lab[post] >= 0)
            p_within = same.sum() / n_within if n_within > 0 else np.nan
            p_between = diff.sum() / n_between if n_between > 0 else np.nan
        aw = np.abs(w.astype(np.float64))
        out["n_synapses"].append(len(pre))
        out["p"].append(len(pre) / possible if possible > 0 else np.nan)
        out["p_within"].append(p_within)
        out["p_between"].append(p_between)
        out["mean_weight"].append(aw.mean() if len(aw) else np.nan)
        out["std_weight"].append(aw.std() if len(aw) else np.nan)
        out["mean_in_degree"].append(len(pre) / n_post if n_post else np.nan)
        out["mean_out_degree"].append(len(pre) / n_pre if n_pre else np.nan)
    n_asm = int(len(np.unique(lab[lab >= 0])))
    return xr.Dataset({k: ("pair", np.asarray(v)) for k, v in out.items()}, coords={"pair": list(PAIRS)},
                      attrs={"n_neurons": s.n, "n_exc": int(s.is_exc.sum()), "n_inh": int((~s.is_exc).sum()),
                             "n_inputs": int(s.n_inputs), "n_assemblies": n_asm,
                             "pair_convention": "pre then post: EI = E->I; ff_E = input->E"})


def degrees(s) -> dict[str, np.ndarray]:
    """Per recurrent neuron: in-degree from E, from I, from inputs; out-degree onto recurrent neurons."""
    s = _as_structure(s)
    pre_e = s.is_exc[s.rec_pre]
    return {"in_from_E": np.bincount(s.rec_post[pre_e], minlength=s.n),
            "in_from_I": np.bincount(s.rec_post[~pre_e], minlength=s.n),
            "in_from_inputs": np.bincount(s.ff_post, minlength=s.n),
            "out_recurrent": np.bincount(s.rec_pre, minlength=s.n)}


def degree_distributions(s) -> Figure:
    """Histograms of in/out degrees, E cells red, I cells blue."""
    s = _as_structure(s)
    d = degrees(s)
    fig, axes = _figure(2, 2, figsize=(8.0, 5.6))
    for ax, (name, v) in zip(axes.flat, d.items()):
        lo, hi = (int(v.min()), int(v.max())) if v.size else (0, 0)
        edges = np.arange(lo, hi + 2) - 0.5 if hi - lo < 40 else np.linspace(lo - 0.5, hi + 0.5, 31)
        for t in ("E", "I"):
            vt = v[s.cell_type == t]
            if vt.size:
                ax.hist(vt, bins=edges, alpha=0.55, color=EI_COLORS[t], label=f"{t} (mean {vt.mean():.1f})")
        ax.set(xlabel=name.replace("_", " "), ylabel="neurons")
        ax.legend(frameon=False, fontsize=8)
    fig.suptitle("degree distributions", fontsize=10)
    return fig


def _sorted_order(s: NetworkStructure) -> np.ndarray:
    lab = s.assembly if s.assembly is not None else np.zeros(s.n, int)
    return np.lexsort((np.arange(s.n), lab, ~s.is_exc))


def connectome_matrix(s, max_neurons: int = 1000) -> Figure:
    """Recurrent weight matrix (post, pre), sorted E-then-I and by assembly; evenly subsampled above max_neurons."""
    s = _as_structure(s)
    order = _sorted_order(s)
    if len(order) > max_neurons:
        order = order[np.linspace(0, len(order) - 1, max_neurons).round().astype(int)]
    W = s.dense_recurrent()[np.ix_(order, order)].T  # (post, pre)
    fig = connectivity_matrix(W, s.cell_type[order], units="weight (x g_bar)")
    return fig


def _block_density(s: NetworkStructure, pre_t="E", post_t="E") -> tuple[np.ndarray, np.ndarray]:
    """(K, K) connection probability between assemblies (rows pre) for a cell-type pair, and K sizes."""
    lab = s.assembly if s.assembly is not None else np.zeros(s.n, int)
    ks = np.unique(lab[lab >= 0])
    pre_m, post_m = s.cell_type == pre_t, s.cell_type == post_t
    idx = {k: i for i, k in enumerate(ks)}
    counts = np.zeros((len(ks), len(ks)))
    m = pre_m[s.rec_pre] & post_m[s.rec_post] & (lab[s.rec_pre] >= 0) & (lab[s.rec_post] >= 0)
    a = np.array([idx[k] for k in lab[s.rec_pre[m]]], int)
    b = np.array([idx[k] for k in lab[s.rec_post[m]]], int)
    np.add.at(counts, (a, b), 1)
    n_pre = np.array([(pre_m & (lab == k)).sum() for k in ks], float)
    n_post = np.array([(post_m & (lab == k)).sum() for k in ks], float)
    possible = np.outer(n_pre, n_post) - (np.diag(n_pre) if pre_t == post_t else 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(possible > 0, counts / possible, np.nan), n_pre


def assembly_graph(s) -> Figure:
    """Assemblies as nodes on a circle (E->E): node area ~ within-assembly probability, edge width ~
    between-assembly probability; right: the assembly x assembly E->E probability matrix."""
    s = _as_structure(s)
    P, sizes = _block_density(s)
    K = len(P)
    fig, axes = _figure(1, 2, figsize=(9.0, 4.2))
    ax, axm = axes[0]
    ang = 2 * np.pi * np.arange(K) / max(K, 1)
    x, y = np.cos(ang), np.sin(ang)
    off = P[~np.eye(K, dtype=bool)] if K > 1 else np.zeros(0)
    pmax = float(np.nanmax(P)) if K and np.isfinite(P).any() else 1.0
    for i in range(K):
        for j in range(i + 1, K):
            p = np.nanmean([P[i, j], P[j, i]])
            if np.isfinite(p) and p > 0:
                ax.plot([x[i], x[j]], [y[i], y[j]], color="0.3", lw=0.3 + 6 * p / (pmax or 1), alpha=0.6,
                        zorder=1)
    diag = np.diag(P) if K else np.zeros(0)
    ax.scatter(x, y, s=100 + 1500 * np.nan_to_num(diag) / (pmax or 1), color=EI_COLORS["E"], alpha=0.85,
               zorder=2, edgecolors="k")
    for i in range(K):
        ax.annotate(f"{i}\n(n={int(sizes[i])})", (x[i] * 1.28, y[i] * 1.28), ha="center", va="center", fontsize=7)
    ax.set(xlim=(-1.6, 1.6), ylim=(-1.6, 1.6), aspect="equal",
           title=f"E assemblies: within {np.nanmean(diag):.3f}, between "
                 f"{np.nanmean(off) if off.size else float('nan'):.3f}")
    ax.axis("off")
    im = axm.imshow(P, cmap="viridis", vmin=0, interpolation="nearest")
    axm.set(xlabel="post assembly", ylabel="pre assembly", title="E->E connection probability",
            xticks=range(K), yticks=range(K))
    fig.colorbar(im, ax=axm, shrink=0.85, label="connection probability")
    return fig


def assembly_coactivation(ds: xr.Dataset, assembly, bin_ms: float = 20.0, cell_type: str = "E") -> float:
    """Mean pairwise correlation of binned spike counts within assemblies minus between assemblies.

    Counts in ``bin_ms`` bins (full bins of all trials pooled) of the neurons of
    ``cell_type`` with an assembly label >= 0 and non-zero count variance;
    Pearson correlation per neuron pair.  ``assembly``: label per neuron of
    ``ds`` (same order).  NaN when there are no within- or no between-pairs.
    Computed from per-assembly sums of z-scores (O(neurons x bins), no pair matrix).
    """
    lab = np.asarray(assembly)
    counts = bin_spikes(ds, bin_ms)
    full = np.isclose(counts["bin_width_ms"].values, bin_ms)
    x = counts.values[:, full, :].reshape(-1, counts.sizes["neuron"]).astype(np.float64)
    ei = np.asarray(ds["ei"].values).astype(str) if "ei" in ds.coords else np.full(x.shape[1], cell_type)
    sd = x.std(axis=0)
    keep = (ei == cell_type) & (lab >= 0) & (sd > 0)
    if x.shape[0] < 2 or keep.sum() < 2:
        return float("nan")
    z = (x[:, keep] - x[:, keep].mean(axis=0)) / sd[keep]
    T, lab = z.shape[0], lab[keep]
    ks, n_k = np.unique(lab, return_counts=True)
    S = np.stack([z[:, lab == k].sum(axis=1) for k in ks])  # (K, T)
    within_sum = float(((S ** 2).sum(axis=1) / T - n_k).sum())
    total_sum = float((S.sum(axis=0) ** 2).sum() / T - len(lab))
    n_within = float((n_k * (n_k - 1)).sum())
    n_between = float(len(lab) * (len(lab) - 1)) - n_within
    if n_within == 0 or n_between == 0:
        return float("nan")
    return within_sum / n_within - (total_sum - within_sum) / n_between


def _robust_range(values: np.ndarray) -> tuple[float, float, bool]:
    """(vmin, vmax, clipped): the finite range, its top cut at the Tukey fence q75 + 3 IQR so that one
    outlier does not flatten the colour scale of the rest."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if not v.size:
        return 0.0, 1.0, False
    q25, q75 = np.percentile(v, [25, 75])
    fence = q75 + 3.0 * (q75 - q25)
    hi = float(v.max()) if fence >= v.max() or q75 == q25 else float(fence)
    return float(v.min()), hi, hi < v.max()


def _label(da: xr.DataArray) -> str:
    """Axis/colorbar label: name and units (or the long name for a dimensionless quantity)."""
    units = str(da.attrs.get("units", ""))
    if units and units != "1":
        return f"{da.name} ({units})"
    long = da.attrs.get("long_name")
    return f"{da.name}: {long}" if long else f"{da.name} (dimensionless)"


def grid_score_maps(ds: xr.Dataset, var: str = "score", at: str = "score",
                    max_pairs: int = 10) -> list[tuple[str, Figure]]:
    """Heatmaps of ``ds[var]`` for each pair of grid dims: 2-D slices through the minimum of ``ds[at]``
    (starred); a line plot for a 1-D grid.  Returns (file stem, figure) pairs."""
    da = ds[var]
    dims = list(da.dims)
    ref = ds[at].transpose(*dims).values
    best = np.unravel_index(int(np.argmin(np.where(np.isfinite(ref), ref, np.inf))), da.shape)
    figs = []
    if len(dims) == 1:
        fig, axes = _figure()
        ax = axes[0, 0]
        ax.plot(np.arange(da.size), da.values, "o-")
        ax.plot(best[0], da.values[best], marker="*", color="r", ms=14, mec="k", ls="")
        ax.set_xticks(np.arange(da.size), [str(v) for v in da[dims[0]].values])
        ax.set(xlabel=dims[0], ylabel=_label(da), title=f"{var} (at the best {at}: {da.values[best]:.3g})")
        return [(f"{var}_{dims[0]}", fig)]
    pairs = [(i, j) for i in range(len(dims)) for j in range(i + 1, len(dims))][:max_pairs]
    for i, j in pairs:
        sel = {d: best[k] for k, d in enumerate(dims) if k not in (i, j)}
        sl = da.isel(sel).transpose(dims[i], dims[j])
        fig, axes = _figure(figsize=(5.6, 4.4))
        ax = axes[0, 0]
        lo, hi, clipped = _robust_range(sl.values)
        im = ax.imshow(sl.values, origin="lower", cmap="viridis_r", aspect="auto", vmin=lo, vmax=hi)
        for (r, c), v in np.ndenumerate(sl.values):
            dark = np.isfinite(v) and hi > lo and (min(v, hi) - lo) / (hi - lo) > 0.5  # viridis_r: high = dark
            ax.text(c, r - 0.3, f"{v:.3g}", ha="center", va="center", fontsize=7, color="w" if dark else "k")
        ax.plot(best[j], best[i], marker="*", color="r", ms=14, mec="k", ls="", label=f"best {at}")
        ax.set_xticks(range(sl.shape[1]), [str(v) for v in sl[dims[j]].values])
        ax.set_yticks(range(sl.shape[0]), [str(v) for v in sl[dims[i]].values])
        fixed = ", ".join(f"{d}={da[d].values[k]}" for d, k in sel.items())
        ax.set(xlabel=dims[j], ylabel=dims[i], title=f"{var}" + (f" at {fixed}" if fixed else ""))
        ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
        fig.colorbar(im, ax=ax, shrink=0.85, label=_label(da) + (" (colours clipped)" if clipped else ""),
                     extend="max" if clipped else "neither")
        figs.append((f"{var}_{dims[i]}_vs_{dims[j]}", fig))
    return figs


def analyse_structure(s, out_dir, prefix: str = "") -> xr.Dataset:
    """Statistics of a structure (npz path or NetworkStructure) plus figures ``matrix``, ``assembly_graph``
    and ``degrees`` (PNG) written to ``out_dir``; returns :func:`structure_stats`."""
    s = _as_structure(s)
    out = Path(out_dir)
    save(connectome_matrix(s), out / f"{prefix}matrix.png")
    save(assembly_graph(s), out / f"{prefix}assembly_graph.png")
    save(degree_distributions(s), out / f"{prefix}degrees.png")
    return structure_stats(s)
