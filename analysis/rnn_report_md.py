"""``training_report.md`` of an RNN fit: the summary, r beside its ceiling and the baselines, the observation
model's metrics, the configuration, the files and code to load them (:func:`write_report`, called by
:func:`neurodsl.analysis.rnn_report.write_all`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr


def _flat(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


def write_report(path: Path, s: dict, fit: xr.Dataset, run: dict, files: list) -> Path:
    """``training_report.md``: summary, metrics (r next to its ceiling), config, files, code."""
    import yaml
    f = lambda x: "n/a" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f"{x:.3f}"  # noqa: E731
    out = Path(path).parent
    lines = [f"# RNN fit report: {s['spec_name']}", "",
             f"Spec `{s['spec_path']}` (sha256 `{s['spec_sha256'][:12]}`), seed {s['seed']}, device {s['device']}"
             f"{', **--test run**' if s.get('test') else ''}; finished {s['finished']}.", "",
             "## Summary", "",
             "| item | value |", "|---|---|",
             f"| epochs run | {s['epochs']} |",
             f"| stopped by | {'early stopping (patience on validation PSTH correlation)' if s['early_stopped'] else 'epoch limit'} |",
             f"| best epoch | {s['best_epoch']} |",
             f"| best validation correlation | {f(s['best_val_correlation'])} |",
             f"| final-epoch validation correlation | {f(s['final_val_correlation'])} |",
             f"| training time | {s['train_time_s']:.1f} s ({f(s['s_per_epoch'])} s/epoch, median; "
             f"{s['n_batches']} batch(es) of {s['batch_size']} trials) |",
             f"| setup time (data, compile excluded) | {s['setup_time_s']:.1f} s |", "",
             "## Final metrics (best parameters, validation trials, no process noise)", "",
             "Pearson r between model and target PSTHs (unsmoothed), mean over neurons; the noise "
             "ceiling is the r a perfect model would reach (split halves of training trials + Spearman-Brown).", "",
             "| metric | r | noise ceiling | r / ceiling |", "|---|---|---|---|",
             f"| pooled PSTH (all validation trials) | {f(s['r_pooled'])} | {f(s['ceiling_pooled'])} | "
             f"{f(s['r_over_ceiling'])} |",
             f"| condition-resolved PSTHs | {f(s['r_condition'])} | {f(s['ceiling_condition'])} | "
             f"{f(s['r_condition'] / s['ceiling_condition'] if s['ceiling_condition'] else float('nan'))} |",
             f"| E neurons (pooled) | {f(s['r_E'])} | | |", f"| I neurons (pooled) | {f(s['r_I'])} | | |"]
    if "r_ground_truth" in s:
        lines += [f"| vs ground-truth rates (pooled) | {f(s['r_ground_truth'])} | | |",
                  f"| vs ground-truth rates (conditions) | {f(s['r_ground_truth_condition'])} | | |"]
    lines += _baseline_lines(s, fit, f)
    lines += _observation_lines(s, f)
    lines += ["", "Per neuron (ceiling: point [95% bootstrap interval]; * r above the interval):", "",
              "| neuron | E/I | r pooled | ceiling | r condition | ceiling | rate model | rate data | bits/spike |",
              "|---|---|---|---|---|---|---|---|---|"]
    for i in range(fit.sizes["neuron"]):
        g = lambda n: float(fit[n].values[i]) if n in fit else float("nan")  # noqa: E731
        lines.append(f"| {fit['neuron'].values[i]} | {fit['ei'].values[i]} | {f(g('r_pooled'))}"
                     f"{' *' if bool(fit['r_above_ceiling_ci'].values[i]) else ''} | {f(g('ceiling_pooled'))} "
                     f"[{f(g('ceiling_pooled_lo'))}, {f(g('ceiling_pooled_hi'))}] | {f(g('r_condition'))} | {f(g('ceiling_condition'))} | "
                     f"{g('mean_rate_model'):.2f} | {g('mean_rate_target'):.2f} | {f(g('bits_per_spike'))} |")
    lines += ["", "## Data notes", ""] + [f"- {n}" for n in s["notes"]]
    lines += ["", "## Configuration", "", "| key | value |", "|---|---|"]
    lines += [f"| `{k}` | `{v}` |" for k, v in _flat(yaml.safe_load(run["resolved_yaml"]))]
    lines += ["", "## Files", ""]
    lines += [f"- `{Path(p).relative_to(out)}`" for p in sorted(set(map(str, files)))]
    lines += ["- `training_log.json`, `checkpoints/` (best, final, latest, every N epochs), `spec.yaml`", "",
              "## Loading the results", "", "```python", "import json, numpy as np, xarray as xr",
              f"fit = xr.open_dataset({str(out / 'fit.nc')!r})",
              "print(fit.attrs['metric_r_pooled'], fit.attrs['metric_ceiling_pooled'])",
              "r = fit['r_pooled'].to_series()                     # per-neuron correlation",
              "print(fit['r_pooled'].groupby('ei').mean())          # E vs I",
              "psth_m = fit['psth_model'].sel(condition=0)          # (time, neuron), sp/s",
              "W = fit['W_rec'].values                              # Dale's law applied",
              "assert (W[:, fit['unit_ei'].values == 'I'] <= 0).all()",
              f"log = json.load(open({str(out / 'training_log.json')!r}))",
              "val_r = [e['val_correlation'] for e in log]",
              f"W_in = np.load({str(out / 'weights' / 'W_in.npy')!r})", "```", ""]
    Path(path).write_text("\n".join(lines))
    return Path(path)


def _observation_lines(s: dict, f) -> list[str]:
    """Observation model, NLB metrics and the Fano factors they make comparable."""
    obs = s.get("observation", "none")
    out = ["", "## Observation model and Neural Latents Benchmark metrics", "",
           f"`model.observation: {obs}`. Bits per spike: nlb_tools' `bits_per_spike` (Poisson log-likelihood "
           "gain over each neuron's mean count, per recorded spike, in bits) of the noise-free model rates on the "
           "validation trials; the model never sees these trials' activity, so every neuron is held out as in "
           "co-bps. PSTH R2: nlb_tools' `eval_psth` (single-trial model rates against each trial's condition "
           "PSTH, smoothed as the PSTH loss, from all trials of the condition; mean over neurons).", "",
           "| metric | value |", "|---|---|",
           f"| bits per spike (> 0: better than the mean-rate null) | {f(s.get('bits_per_spike'))} (training PSTH: "
           f"{f(s.get('bits_per_spike_train_psth'))}, per condition: {f(s.get('bits_per_spike_train_condition_psth'))}) |",
           f"| bits per spike of the model's rates through a per-neuron Poisson gain and offset fitted on the training "
           f"trials (median gain {f(s.get('calibration_gain_median'))}) | {f(s.get('bits_per_spike_calibrated'))} |",
           f"| condition-PSTH R2 | {f(s.get('psth_r2'))} |",
           f"| validation r (pooled PSTH), for comparison | {f(s['r_pooled'])} |"]
    if "gaussian_nll_model" in s:
        out.append(f"| Gaussian NLL per value, model / per-neuron-mean null | {f(s['gaussian_nll_model'])} / "
                   f"{f(s['gaussian_nll_null'])} |")
    how = (f"model counts *sampled* from the {obs} observation model on the rates with process noise "
           f"(rate x bin without it: {f(s.get('fano_model_rate'))})" if obs != "none" else
           "model counts = rate x bin: no observation model (`model.observation: none`), so the model has no "
           "spiking noise and its Fano factor is not comparable to the recording's")
    tm = [f(s.get(f"trial_matching_{k}")) for k in ("model", "model_rate", "data")]
    return out + ["", f"Fano factor (counts across trials per condition and bin, valid bins): model "
                      f"{f(s['fano_model'])} vs recorded {f(s['fano_target'])}; {how}.", "",
                  f"Trial matching (optimal within-condition pairing of single validation trials, smoothed, per "
                  f"neuron / recorded s.d.; `trial_matching_cost`): model {'samples' if obs != 'none' else '= rates'} "
                  f"{tm[0]}, model rates {tm[1]}, recorded training trials {tm[2]} (the reference: a model with "
                  "the recording's trial-to-trial spread scores about this; rates without spread can score below)."]


BASELINES = {"raw_psth": "raw training PSTH", "smoothed_psth": "smoothed training PSTH",
             "condition_psth": "per-condition training PSTH",
             "lowrank_psth": "low-rank smoothed training PSTH", "ridge_lagged_inputs": "ridge from lagged inputs"}


def _baseline_lines(s: dict, fit: xr.Dataset, f) -> list[str]:
    """Model vs model-free baselines vs the ceiling with its interval, on the validation r's scale."""
    c = s["ceiling_pooled"]
    ratio = lambda r: f(r / c if c else float("nan"))  # noqa: E731
    out = ["", "## Model vs baselines vs noise ceiling", "",
           "Pooled validation r (the training log's validation correlation), mean over neurons; baselines "
           "predict the validation trials from the training trials only (smoothing and ridge penalty chosen "
           "on training halves, `neurodsl.analysis.baselines.psth_baselines`).", "",
           "| predictor | r | r / ceiling | how |", "|---|---|---|---|",
           f"| **RNN (best parameters)** | {f(s['r_pooled'])} | {ratio(s['r_pooled'])} | |"]
    out += [f"| {label} | {f(s[f'r_baseline_{k}'])} | {ratio(s[f'r_baseline_{k}'])} | {s[f'baseline_{k}_how']} |"
            for k, label in BASELINES.items() if f"r_baseline_{k}" in s]
    above = [str(n) for n, x in zip(fit["neuron"].values, fit["r_above_ceiling_ci"].values) if x]
    out += [f"| noise ceiling | {f(c)} [{f(s['ceiling_pooled_lo'])}, {f(s['ceiling_pooled_hi'])}] | 1 | "
            "95% bootstrap interval over training trials (`noise_ceiling_ci`) |", "",
            f"Neurons whose r exceeds their own ceiling's interval: {', '.join(above) or 'none'} "
            "(the interval covers the ceiling estimate's error from the training trials, not the validation "
            "r's own sampling error)."]
    return out
