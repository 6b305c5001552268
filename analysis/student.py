"""``neurodsl analyze student DIR``: Poisson vs learning variability and identifiability of a fitted student.

Reads what :func:`neurodsl.runners.student.run_student` wrote: ``comparison.npz``
(fresh odour inputs; teacher run twice with different input noise, ``teacher_a`` /
``teacher_b``, and the student with ``teacher_a``'s inputs; spikes (T, trial, N)),
``params.npz`` (teacher / initial / recovered parameters) and
``student_summary.json``.  Draws to ``DIR/figures/student/``:

* ``variability.png``: side by side, *Poisson variability* (teacher vs teacher repeat)
  and *learning variability* (teacher vs student): per-neuron rate scatter, per-neuron
  van Rossum distances (double exponential kernel 10/100 ms), rate correlation; the
  ratio learning / Poisson (mean van Rossum distance) in the title;
* ``raster.png``: the first 10 neurons, teacher and student rows interleaved;
* ``identifiability.png``: true vs recovered scaling factors / weights, correlation and
  relative error per pair.

Returns the figure paths; the numbers go to ``DIR/student_report.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .plots import _figure, save
from .stats import van_rossum_distance


def _rates(spikes: np.ndarray, dt_ms: float) -> np.ndarray:
    return spikes.sum((0, 1)) / (spikes.shape[0] * spikes.shape[1] * dt_ms * 1e-3)


def _vr(a: np.ndarray, b: np.ndarray, dt_ms: float) -> np.ndarray:
    """(N,) van Rossum distance per neuron, averaged over trials."""
    T, B, N = a.shape
    out = np.zeros(N)
    for i in range(N):
        out[i] = np.mean([van_rossum_distance(np.nonzero(a[:, b_, i])[0] * dt_ms, np.nonzero(b[:, b_, i])[0] * dt_ms,
                                              dt_ms=dt_ms, kernel="double_exp") for b_ in range(B)])
    return out


def variability(d) -> dict:
    dt = float(d["dt_ms"])
    ra, rb, rs = (_rates(d[k], dt) for k in ("teacher_a", "teacher_b", "student"))
    vr_p, vr_l = _vr(d["teacher_a"], d["teacher_b"], dt), _vr(d["teacher_a"], d["student"], dt)

    def corr(x, y):
        return float(np.corrcoef(x, y)[0, 1]) if x.std() > 0 and y.std() > 0 else float("nan")

    return {"rates": (ra, rb, rs), "vr": (vr_p, vr_l),
            "poisson": {"van_rossum": float(vr_p.mean()), "rate_correlation": corr(ra, rb),
                        "rate_rmse": float(np.sqrt(np.mean((ra - rb) ** 2)))},
            "learning": {"van_rossum": float(vr_l.mean()), "rate_correlation": corr(ra, rs),
                         "rate_rmse": float(np.sqrt(np.mean((ra - rs) ** 2)))},
            "ratio_learning_over_poisson": float(vr_l.mean() / max(vr_p.mean(), 1e-12))}


def student_report(out_dir) -> list[Path]:
    out = Path(out_dir)
    figdir = out / "figures" / "student"
    d = dict(np.load(out / "comparison.npz"))
    v = variability(d)
    ra, rb, rs = v["rates"]
    fig, ax = _figure(1, 3, figsize=(13, 3.8))
    ax = ax[0]
    hi = max(ra.max(), rb.max(), rs.max(), 1e-3) * 1.05
    ax[0].scatter(ra, rb, s=6, alpha=0.6, label="teacher repeat (Poisson)")
    ax[0].scatter(ra, rs, s=6, alpha=0.6, label="student (learning)")
    ax[0].plot([0, hi], [0, hi], "k--", lw=0.8)
    ax[0].set_xlabel("teacher rate (Hz)"), ax[0].set_ylabel("rate (Hz)"), ax[0].legend(fontsize=7)
    bins = np.linspace(0, max(v["vr"][0].max(), v["vr"][1].max(), 1e-3), 30)
    ax[1].hist(v["vr"][0], bins=bins, alpha=0.6, label="Poisson")
    ax[1].hist(v["vr"][1], bins=bins, alpha=0.6, label="learning")
    ax[1].set_xlabel("van Rossum distance per neuron"), ax[1].legend(fontsize=7)
    names = ["Poisson", "learning"]
    ax[2].bar(names, [v["poisson"]["rate_correlation"], v["learning"]["rate_correlation"]])
    ax[2].set_ylabel("rate correlation with teacher")
    fig.suptitle(f"learning / Poisson variability (van Rossum) = {v['ratio_learning_over_poisson']:.2f}")
    paths = [save(fig, figdir / "variability.png")]
    fig, axr = _figure(figsize=(9, 4))
    axr = axr[0, 0]
    dt = float(d["dt_ms"])
    for i in range(min(10, ra.size)):
        for j, (k, c) in enumerate((("teacher_a", "k"), ("student", "tab:red"))):
            t = np.nonzero(d[k][:, 0, i])[0] * dt
            axr.vlines(t, 2 * i + j, 2 * i + j + 0.8, color=c, lw=0.8)
    axr.set_xlabel("time (ms)"), axr.set_ylabel("neuron (teacher black / student red)")
    paths.append(save(fig, figdir / "raster.png"))
    ident = {}
    pz = out / "params.npz"
    if pz.exists():
        p = dict(np.load(pz))
        summ = json.loads((out / "student_summary.json").read_text()) if (out / "student_summary.json").exists() else {}
        keys = [k for k in ("scaling", "rec_weight", "ff_weight") if k in summ.get("recovered", {})] or ["scaling"]
        fig, axi = _figure(1, len(keys), figsize=(4.5 * len(keys), 3.8))
        for a, k in zip(axi[0], keys):
            t, r = np.abs(p[f"{k}_teacher"]).ravel(), np.abs(p[f"{k}_recovered"]).ravel()
            i0 = np.abs(p[f"{k}_initial"]).ravel()
            rel = np.abs(r - t) / np.maximum(t, 1e-12)
            c = float(np.corrcoef(t, r)[0, 1]) if t.std() > 0 else 1.0
            a.scatter(t, i0, s=10, alpha=0.5, label="initial")
            a.scatter(t, r, s=10, label="recovered")
            lim = [0, max(t.max(), r.max(), i0.max()) * 1.05]
            a.plot(lim, lim, "k--", lw=0.8)
            a.set_title(f"{k}: r = {c:.3f}, max rel. err {rel.max():.3f}", fontsize=9)
            a.set_xlabel("true"), a.set_ylabel("fitted"), a.legend(fontsize=7)
            ident[k] = {"correlation": c, "relative_error": rel.tolist() if rel.size <= 64 else None,
                        "max_relative_error": float(rel.max()), "median_relative_error": float(np.median(rel))}
        paths.append(save(fig, figdir / "identifiability.png"))
    report = {"poisson": v["poisson"], "learning": v["learning"],
              "ratio_learning_over_poisson": v["ratio_learning_over_poisson"], "identifiability": ident}
    (out / "student_report.json").write_text(json.dumps(report, indent=1))
    return paths


if __name__ == "__main__":  # python -m neurodsl.analysis.student DIR
    import sys
    for _p in student_report(Path(sys.argv[1])):
        print(f"wrote {_p}")
