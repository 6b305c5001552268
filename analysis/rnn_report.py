"""Outputs of an RNN fit: metrics, the labelled ``fit.nc`` Dataset, .npy tree, report.

:func:`write_all` takes plain arrays (:class:`FitArrays`, no model objects) and
writes ``weights/``, ``outputs/``, ``metrics/``, ``population/`` (one .npy per
variable), ``fit.nc`` (all of it; dims ``trial``, ``time``, ``neuron``, ``pc``,
``condition``, ``unit``...; coords ``trial_condition``, ``ei``), the figures
(:mod:`neurodsl.analysis.rnn_figures`) and ``training_report.md``.

Correlations are Pearson r between model and target PSTHs of the validation
trials, unsmoothed: ``pooled`` averages all validation trials, ``condition``
concatenates the condition PSTHs.  Noise ceilings are split-half estimates on
the training trials with Spearman-Brown (:func:`neurodsl.analysis.psth.noise_ceiling`).
Fano factors: spike counts ``rate * bin`` per (condition, bin), variance over
trials (ddof=1) / mean, averaged over the (condition, bin) cells with a non-zero mean
(valid bins only); the model's counts are *sampled* from its observation model
(``model.observation``: poisson or gaussian, :mod:`neurodsl.analysis.nlb`) on the
rates with process noise, or with ``none`` are those rates x bin (no spiking
noise: ``fano_model_rate`` always holds that value).  Neural Latents Benchmark
metrics (:func:`neurodsl.analysis.nlb.observation_metrics`): bits per spike of
the noise-free model rates on the validation trials against the mean-rate null,
and the condition-PSTH R2.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from .nlb import observation_metrics, sample_observations
from .pca import pca, project
from .psth import noise_ceiling, noise_ceiling_ci, psth, psth_correlation, smooth_time, zscore_psth
from .baselines import psth_baselines
from .stats import fano_factor


@dataclass
class FitArrays:
    ds: xr.Dataset               # loaded data (rate, inputs, coords)
    train: np.ndarray
    val: np.ndarray
    cond: np.ndarray             # condition id per trial (all trials)
    cond_names: tuple
    bin_ms: float
    rate_model: np.ndarray       # (val trials, T, N) noise-free
    rate_model_noisy: np.ndarray
    rate_hidden: np.ndarray      # (val trials, T, hidden units)
    valid: np.ndarray            # (all trials, T)
    weights: dict
    unit_ei: np.ndarray
    attention: np.ndarray | None
    readout: np.ndarray | None
    input_names: list
    ground_truth: dict | None
    smooth_ms: float = 50.0
    observation: str = "none"    # model.observation
    obs_sigma: np.ndarray | None = None  # gaussian: per-neuron noise s.d. (estimated from training trials)
    rate_model_train: np.ndarray | None = None  # (train trials, T, N) noise-free: the Poisson calibration


def fano_by_condition(rate, valid, cond, bin_ms: float, min_trials: int = 2) -> np.ndarray:
    """Per-neuron Fano factor of counts ``rate * bin_ms / 1000`` across trials of a condition (unbiased
    variance, ddof=1: with the few validation trials per condition ddof=0 read Poisson counts as ~(n-1)/n)."""
    counts = np.where(valid[..., None] > 0, np.asarray(rate, np.float64) * bin_ms / 1000.0, np.nan)
    out = []
    for c in np.unique(cond):
        sel = cond == c
        if sel.sum() >= min_trials:
            out.append(fano_factor(counts[sel], axis=0, ddof=1))  # (T, N)
    f = np.concatenate(out, 0) if out else np.full((1, counts.shape[-1]), np.nan)
    f = np.where(np.isfinite(f), f, np.nan)
    n = np.isfinite(f).sum(0)
    return np.where(n > 0, np.nansum(f, 0) / np.maximum(n, 1), np.nan)


def _nanmean(x) -> float:
    x = np.asarray(x, float)
    return float(np.mean(x[np.isfinite(x)])) if np.isfinite(x).any() else float("nan")


def _da(x, ds, trials, valid):
    x = np.where(valid[..., None] > 0, x, np.nan)
    return xr.DataArray(x, dims=("trial", "time", "neuron"),
                        coords={"time": ds["time"].values, "neuron": ds["neuron"].values,
                                "ei": ("neuron", np.asarray(ds["ei"].values).astype(str)),
                                "condition": ("trial", trials)}, attrs={"bin_ms": 0.0})


def _ground_truth_rates(a: FitArrays) -> np.ndarray | None:
    gt = a.ground_truth
    if gt is None:
        return None
    if "rates_noiseless" in gt and gt["rates_noiseless"].shape[0] == a.ds.sizes["trial"]:
        return np.asarray(gt["rates_noiseless"])[a.val]
    names = [str(x) for x in gt.get("input_names", [])]
    if not names or any(n not in a.input_names for n in names) or "W_rec" not in gt:
        return None
    from neurodsl.io.synthetic import _simulate
    u = a.ds["inputs"].values[a.val][..., [a.input_names.index(n) for n in names]].astype(np.float64)
    alpha = float(gt["dt_ms"]) / float(gt["tau_ms"])
    return _simulate(gt["W_rec"], gt["W_in"], gt["b"], gt["h0"], u, alpha, 0.0, np.random.default_rng(0))


def metrics(a: FitArrays) -> tuple[xr.Dataset, dict]:
    """Per-neuron metrics (dim neuron) and the headline numbers."""
    ds, v, tr = a.ds, a.val, a.train
    names = np.asarray(a.cond_names)
    target = _da(ds["rate"].values[v], ds, names[a.cond[v]], a.valid[v])
    model = _da(a.rate_model, ds, names[a.cond[v]], a.valid[v])
    train = _da(ds["rate"].values[tr], ds, names[a.cond[tr]], a.valid[tr])
    for x in (target, model, train):
        x.attrs["bin_ms"] = a.bin_ms
    pooled = psth_correlation(psth(model), psth(target))["r"]
    pm, pt = psth(model, by="condition"), psth(target, by="condition")
    rc = psth_correlation(pm, pt)
    ci = noise_ceiling_ci(train, target, seed=0)
    ceil_p = ci["ceiling"]
    ceil_c = noise_ceiling(train, target, seed=0, by="condition")["ceiling"]
    m = xr.Dataset(coords={"neuron": ds["neuron"].values, "ei": ("neuron", target["ei"].values)})
    m["r_pooled"], m["r_condition"] = ("neuron", pooled.values), ("neuron", rc["r"].values)
    m["ceiling_pooled"], m["ceiling_condition"] = ("neuron", ceil_p.values), ("neuron", ceil_c.values)
    m["ceiling_pooled_lo"], m["ceiling_pooled_hi"] = ("neuron", ci["ceiling_lo"].values), ("neuron", ci["ceiling_hi"].values)
    m["r_above_ceiling_ci"] = ("neuron", pooled.values > ci["ceiling_hi"].values)
    base = psth_baselines(ds["rate"].values, a.valid, ds["inputs"].values, a.cond, tr, v, a.bin_ms, seed=0)
    for name, (r, _) in base.items():
        m[f"r_baseline_{name}"] = ("neuron", r)
    for who, x in (("model", model), ("target", target)):
        m[f"mean_rate_{who}"] = ("neuron", x.mean(("trial", "time")).values)
        m[f"temporal_var_{who}"] = ("neuron", psth(x).var("time").values)
    valid_v = a.valid[v]
    sampled = sample_observations(a.rate_model_noisy, a.bin_ms, a.observation, a.obs_sigma, seed=0)
    m["fano_model"] = ("neuron", fano_by_condition(sampled, valid_v, a.cond[v], a.bin_ms))
    m["fano_model_rate"] = ("neuron", fano_by_condition(a.rate_model_noisy, valid_v, a.cond[v], a.bin_ms))
    per, obs = observation_metrics(a.rate_model, ds["rate"].values, a.valid, a.cond, v, a.bin_ms,
                                   a.smooth_ms / a.bin_ms, a.observation, a.obs_sigma, sampled, tr, a.rate_model_train)
    for k, x in per.items():
        m[k] = ("neuron", x)
    m["fano_target"] = ("neuron", fano_by_condition(ds["rate"].values[v], valid_v, a.cond[v], a.bin_ms))
    ei = target["ei"].values
    head = {"r_pooled": float(np.nanmean(m["r_pooled"])), "ceiling_pooled": float(np.nanmean(m["ceiling_pooled"])),
            "r_condition": float(np.nanmean(m["r_condition"])),
            "ceiling_condition": float(np.nanmean(m["ceiling_condition"])),
            "r_E": float(np.nanmean(m["r_pooled"].values[ei == "E"])) if (ei == "E").any() else float("nan"),
            "r_I": float(np.nanmean(m["r_pooled"].values[ei == "I"])) if (ei == "I").any() else float("nan"),
            "fano_model": _nanmean(m["fano_model"].values), "fano_target": _nanmean(m["fano_target"].values),
            "fano_model_rate": _nanmean(m["fano_model_rate"].values), **obs}
    head["r_over_ceiling"] = head["r_pooled"] / head["ceiling_pooled"] if head["ceiling_pooled"] > 0 else float("nan")
    head.update(ceiling_pooled_lo=float(ci["ceiling_mean_lo"]), ceiling_pooled_hi=float(ci["ceiling_mean_hi"]),
                n_above_ceiling_ci=int(m["r_above_ceiling_ci"].values.sum()))
    for name, (r, how) in base.items():
        head[f"r_baseline_{name}"], head[f"baseline_{name}_how"] = float(np.nanmean(r)), how
    gt = _ground_truth_rates(a)
    if gt is not None:
        truth = _da(gt, ds, names[a.cond[v]], valid_v)
        truth.attrs["bin_ms"] = a.bin_ms
        m["r_ground_truth"] = ("neuron", psth_correlation(psth(model), psth(truth))["r"].values)
        head["r_ground_truth"] = float(np.nanmean(m["r_ground_truth"]))
        head["r_ground_truth_condition"] = float(np.nanmean(psth_correlation(
            pm, psth(truth, by="condition"))["r"]))
    return m, {"psth_model": pm, "psth_target": pt, "head": head}


def fit_dataset(a: FitArrays, run: dict, log: list) -> xr.Dataset:
    """Everything in one labelled Dataset; var attr ``group`` says which .npy folder it belongs to."""
    m, extra = metrics(a)
    ds, v = a.ds, a.val
    pm, pt = extra["psth_model"], extra["psth_target"]
    zt = zscore_psth(smooth_time(pt, a.smooth_ms))
    mu, sd = smooth_time(pt, a.smooth_ms).mean(("condition", "time")), smooth_time(pt, a.smooth_ms).std(("condition", "time"))
    zm = ((smooth_time(pm, a.smooth_ms) - mu) / sd.where(sd > 0)).fillna(0.0)
    k = int(min(3, ds.sizes["neuron"]))
    fitted = pca(zt.fillna(0.0), n_components=k)
    proj_m = project(zm, fitted)
    n_units = len(a.unit_ei)
    out = xr.Dataset(coords={
        "trial": ds["trial"].values[v], "time": ds["time"].values, "neuron": ds["neuron"].values,
        "ei": ("neuron", np.asarray(ds["ei"].values).astype(str)), "pc": np.arange(1, k + 1),
        "condition": np.arange(len(a.cond_names)), "condition_name": ("condition", list(a.cond_names)),
        "trial_condition": ("trial", a.cond[v]), "unit": np.arange(n_units), "unit_pre": np.arange(n_units),
        "unit_ei": ("unit", a.unit_ei)})
    for c in ds.coords:
        if ds[c].dims == ("trial",) and c != "trial":
            out.coords[f"trial_{c}"] = ("trial", ds[c].values[v])
    conds = np.asarray(pm["condition"].values)
    cidx = [list(a.cond_names).index(c) for c in conds]

    def cond_grid(x):  # psth over observed conditions -> full condition axis
        g = np.full((len(a.cond_names),) + x.shape[1:], np.nan)
        g[cidx] = x
        return g

    def add(name, dims, val, group, **attrs):
        out[name] = (dims, np.asarray(val), {"group": group, **attrs})

    add("rate_model", ("trial", "time", "neuron"), a.rate_model.astype(np.float32), "outputs", units="sp/s")
    add("rate_target", ("trial", "time", "neuron"), ds["rate"].values[v].astype(np.float32), "outputs", units="sp/s")
    add("valid", ("trial", "time"), a.valid[v] > 0, "outputs")
    add("psth_model", ("condition", "time", "neuron"), cond_grid(pm.transpose("condition", "time", "neuron").values), "outputs", units="sp/s")
    add("psth_target", ("condition", "time", "neuron"), cond_grid(pt.transpose("condition", "time", "neuron").values), "outputs", units="sp/s")
    if a.rate_hidden.shape[-1]:
        out.coords["hidden"] = np.arange(a.rate_hidden.shape[-1])
        add("rate_hidden", ("trial", "time", "hidden"), a.rate_hidden.astype(np.float32), "outputs", units="sp/s")
    if a.readout is not None:
        add("readout", ("trial", "time", "readout"), a.readout.astype(np.float32), "outputs")
    for name in m.data_vars:
        add(name, ("neuron",), m[name].values, "metrics")
    add("E_label", ("neuron",), np.asarray(ds["ei"].values).astype(str) == "E", "metrics")
    add("pca_components", ("pc", "neuron"), fitted["components"].values, "population")
    add("pca_explained_variance", ("pc",), fitted["explained_variance"].values, "population")
    add("pca_explained_variance_ratio", ("pc",), fitted["explained_variance_ratio"].values, "population")
    add("pca_target", ("pc", "condition", "time"), np.stack([cond_grid(x) for x in fitted["projection"].transpose("pc", "condition", "time").values]), "population")
    add("pca_model", ("pc", "condition", "time"), np.stack([cond_grid(x) for x in proj_m.transpose("pc", "condition", "time").values]), "population")
    wdims = {"W_rec": ("unit", "unit_pre"), "W_in": ("unit", "embedding"), "b": ("unit",), "h0": ("unit",),
             "E_mask": ("unit",), "I_mask": ("unit",), "W_out": ("readout", "e_unit"), "W_emb": ("input", "embedding"),
             "attn_token_w": ("input", "embedding"), "attn_token_b": ("input", "embedding"),
             "attn_Q": ("embedding", "embedding_out"), "attn_K": ("embedding", "embedding_out"),
             "attn_V": ("embedding", "embedding_out"), "attn_out": ("embedding", "embedding_out")}
    for name, w in a.weights.items():
        add(name, wdims[name], w, "weights")
    if a.attention is not None:
        add("attention", ("head", "input_query", "input_key"), a.attention, "weights",
            long_name="attention weights averaged over all trials and bins")
        out.coords["input_query"] = a.input_names
        out.coords["input_key"] = a.input_names
        x = np.nan_to_num(np.asarray(ds["inputs"].values, np.float64)).reshape(-1, len(a.input_names))
        out.coords["input_constant"] = ("input_query", np.ptp(x, axis=0) == 0 if x.size else
                                        np.zeros(len(a.input_names), bool))
    if "W_in" in a.weights and a.weights["W_in"].shape[1] == len(a.input_names):
        out.coords["embedding"] = a.input_names
    out.attrs.update(_attrs(run, extra["head"], ds))
    return out


def _attrs(run: dict, head: dict, ds) -> dict:
    from neurodsl.io.dataset import provenance_attrs
    a = provenance_attrs(run["resolved_yaml"], run["spec_sha256"], run["seed"], spec_name=run["spec_name"],
                         data_source=str(ds.attrs.get("source", "")), data_sha256=str(ds.attrs.get("source_sha256", "")),
                         data_notes="\n".join(run["notes"]), bin_ms=float(ds.attrs.get("bin_size_ms", 0)))
    a.update({k: v for k, v in run.items() if isinstance(v, (int, float, str, bool)) and k != "resolved_yaml"})
    a.update({f"metric_{k}": v for k, v in head.items()})
    return {k: (int(v) if isinstance(v, bool) else v) for k, v in a.items()}


def write_npy(fit: xr.Dataset, out: Path) -> list[Path]:
    paths = []
    for name, var in fit.data_vars.items():
        p = Path(out) / var.attrs["group"] / f"{name}.npy"
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, var.values)
        paths.append(p)
    extra = {"outputs/trial_condition.npy": fit["trial_condition"].values,
             "outputs/condition_names.npy": np.asarray(fit["condition_name"].values).astype(str),
             "metrics/ei.npy": np.asarray(fit["ei"].values).astype(str),
             "outputs/time_ms.npy": fit["time"].values}
    for rel, val in extra.items():
        np.save(Path(out) / rel, val)
        paths.append(Path(out) / rel)
    return paths


def write_all(a: FitArrays, run: dict, log: list, out: Path) -> dict:
    """Write .npy tree, fit.nc, figures and training_report.md; return the summary dict."""
    from neurodsl.io.dataset import write_netcdf
    from .rnn_figures import make_all
    from .rnn_report_md import write_report
    out = Path(out)
    fit = fit_dataset(a, run, log)
    files = write_npy(fit, out)
    write_netcdf(fit, out / "fit.nc")
    figs = make_all(fit, log, out / "figures")
    head = {k[7:]: v for k, v in fit.attrs.items() if k.startswith("metric_")}
    summary = {**{k: v for k, v in run.items() if k != "resolved_yaml"}, **head, "out_dir": str(out),
               "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    write_report(out / "training_report.md", summary, fit, run, files + [out / "fit.nc"] + figs)
    return summary
