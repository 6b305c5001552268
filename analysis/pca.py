"""PCA of population PSTHs (numpy SVD) and projection of other PSTHs into it.

Observations are all (condition x time) samples of a PSTH
``(*conditions, time, neuron)``; features are neurons.  Samples containing a
NaN (e.g. condition combinations without trials) are left out of the fit and
get NaN projections.  Normalise (e.g. :func:`~neurodsl.analysis.psth.zscore_psth`)
before calling if neurons should weigh equally.
"""
from __future__ import annotations

import numpy as np
import xarray as xr

__all__ = ["pca", "project", "variance_captured"]


def _matrix(da: xr.DataArray, neuron_dim: str = "neuron"):
    """(samples, neuron) float64 matrix and the sample dims/shape."""
    if isinstance(da, xr.Dataset):
        da = da["psth"] if "psth" in da else da["rate"]
    if neuron_dim not in da.dims:
        raise ValueError(f"PSTH needs a {neuron_dim!r} dim, has {da.dims}")
    obs = [d for d in da.dims if d != neuron_dim]
    da = da.transpose(*obs, neuron_dim)
    x = np.asarray(da.values, dtype=np.float64).reshape(-1, da.sizes[neuron_dim])
    return da, x, obs


def _obs_coords(da: xr.DataArray, obs: list[str]) -> dict:
    return {k: v for k, v in da.coords.items() if v.dims and set(v.dims) <= set(obs)}


def pca(psth_da: xr.DataArray, n_components: int = 3) -> xr.Dataset:
    """Principal components of a PSTH via SVD of the neuron-centred data matrix.

    ``X`` (samples x neurons) is centred per neuron (``mean``), ``X - mean =
    U S V^T``.  Returns a Dataset with

    * ``components`` (pc, neuron): unit-norm PC loadings (rows of ``V^T``), sign
      fixed so each PC's largest-magnitude loading is positive;
    * ``mean`` (neuron): the subtracted per-neuron mean (input units);
    * ``explained_variance`` (pc): ``S^2 / (n_samples - 1)`` (input units^2);
    * ``explained_variance_ratio`` (pc): ``S^2 / sum(all S^2)``; sums to <= 1;
    * ``singular_values`` (pc);
    * ``projection`` (pc, *conditions, time): ``(X - mean) @ components.T``.

    ``pc`` coordinate labels are 1-based (PC1, PC2, ...).
    """
    da, x, obs = _matrix(psth_da)
    valid = np.isfinite(x).all(axis=1)
    xv = x[valid]
    n_obs, n_neu = xv.shape
    k = int(n_components)
    if not 1 <= k <= min(n_obs, n_neu):
        raise ValueError(f"n_components must be in [1, {min(n_obs, n_neu)}], got {k}")
    mean = xv.mean(axis=0)
    _, s, vt = np.linalg.svd(xv - mean, full_matrices=False)
    comps = vt[:k]
    comps = comps * np.sign(comps[np.arange(k), np.argmax(np.abs(comps), axis=1)])[:, None]
    proj = (x - mean) @ comps.T  # NaN rows stay NaN
    total = np.sum(s ** 2)
    pc = np.arange(1, k + 1)
    neuron_coords = {c: v for c, v in da.coords.items() if v.dims == ("neuron",)}
    obs_shape = [da.sizes[d] for d in obs]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = s[:k] ** 2 / total if total > 0 else np.full(k, np.nan)
    return xr.Dataset(
        {"components": (("pc", "neuron"), comps),
         "mean": ("neuron", mean),
         "explained_variance": ("pc", s[:k] ** 2 / max(n_obs - 1, 1)),
         "explained_variance_ratio": ("pc", ratio),
         "singular_values": ("pc", s[:k]),
         "projection": (("pc", *obs), proj.T.reshape(k, *obs_shape))},
        coords={"pc": pc, **neuron_coords, **_obs_coords(da, obs)},
        attrs={"n_samples": int(n_obs), "units": str(da.attrs.get("units", ""))})


def _match_neurons(other: xr.DataArray, fitted: xr.Dataset) -> xr.DataArray:
    """Reorder ``other``'s neurons like the fit (by label if both have an index)."""
    if other.sizes["neuron"] != fitted.sizes["neuron"]:
        raise ValueError(f"neuron count differs: {other.sizes['neuron']} vs "
                         f"{fitted.sizes['neuron']}")
    if "neuron" in other.indexes and "neuron" in fitted.indexes:
        return other.sel(neuron=fitted["neuron"].values)
    return other


def project(other: xr.DataArray, fitted: xr.Dataset, center: str = "fitted") -> xr.DataArray:
    """Project another PSTH (e.g. the model's) into a fitted PC space.

    ``(X_other - c) @ components.T`` with dims ``(pc, *conditions, time)``;
    ``center="fitted"`` subtracts the data mean ``fitted.mean`` (same origin as
    the data trajectories), ``center="own"`` subtracts ``other``'s own mean.
    Neurons are matched by label when both carry a ``neuron`` index.
    """
    da, x, obs = _matrix(_match_neurons(other, fitted))
    if center == "fitted":
        c = fitted["mean"].values
    elif center == "own":
        c = np.nanmean(x, axis=0)
    else:
        raise ValueError("center must be 'fitted' or 'own'")
    proj = (x - c) @ fitted["components"].values.T
    k = fitted.sizes["pc"]
    return xr.DataArray(proj.T.reshape(k, *[da.sizes[d] for d in obs]),
                        dims=("pc", *obs),
                        coords={"pc": fitted["pc"].values, **_obs_coords(da, obs)},
                        name="projection")


def variance_captured(other: xr.DataArray, fitted: xr.Dataset) -> float:
    """Fraction of ``other``'s variance (about its own mean) inside the fitted PC subspace.

    ``||(X - mean) V_k||^2 / ||X - mean||^2`` over samples without NaN; in [0, 1].
    """
    _, x, _ = _matrix(_match_neurons(other, fitted))
    x = x[np.isfinite(x).all(axis=1)]
    xc = x - x.mean(axis=0)
    total = float(np.sum(xc ** 2))
    inside = float(np.sum((xc @ fitted["components"].values.T) ** 2))
    return inside / total if total > 0 else float("nan")
