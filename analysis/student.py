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
* ``raster.png``: trial 0 of up to 12 active neurons spread over the teacher's rates, teacher and
  student rows paired;
* ``identifiability.png``: true vs recovered scaling factors / weights, max relative and log
  error (the correlation only where the true values vary: it is undefined for a constant truth);
  scaling factors labelled by name (pre→post, the same pair as 'post<-pre' in the report);
* ``curvature.png`` (when the summary holds the fit's identifiability report,
  :mod:`neurodsl.runners.identifiability`): eigen-spectrum of the loss's curvature at the fit,
  eigenvectors, loss profiles along each factor; per factor "recovered / not identifiable from
  these data / identifiable, not recovered" in the report.

Returns the figure paths; the numbers go to ``DIR/student_report.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .identifiability import curvature_figure, error_measures, verdict_lines
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


def _variability_figure(v: dict):
    ra, rb, rs = v["rates"]
    fig, ax = _figure(1, 3, figsize=(13, 3.8))
    ax = ax[0]
    hi = max(ra.max(), rb.max(), rs.max(), 1e-3) * 1.05
    ax[0].scatter(ra, rb, s=6, alpha=0.6, label="teacher repeat (Poisson)")
    ax[0].scatter(ra, rs, s=6, alpha=0.6, label="student (learning)")
    ax[0].plot([0, hi], [0, hi], "k--", lw=0.8, label="identity")
    ax[0].set(xlabel="teacher rate (Hz)", ylabel="rate (Hz)", title="per-neuron rates")
    ax[0].legend(fontsize=7)
    bins = np.linspace(0, max(v["vr"][0].max(), v["vr"][1].max(), 1e-3), 30)
    ax[1].hist(v["vr"][0], bins=bins, alpha=0.6, label="Poisson (teacher vs repeat)")
    ax[1].hist(v["vr"][1], bins=bins, alpha=0.6, label="learning (teacher vs student)")
    ax[1].set(xlabel="van Rossum distance per neuron (kernel 10/100 ms)", ylabel="neurons",
              title="spike-train distances")
    ax[1].legend(fontsize=7)
    ax[2].bar(["Poisson", "learning"], [v["poisson"]["rate_correlation"], v["learning"]["rate_correlation"]],
              color=["C0", "C1"])
    ax[2].set(xlabel="variability source", ylabel="rate correlation with teacher", title="rate correlation")
    fig.suptitle(f"learning / Poisson variability (mean van Rossum distance) = {v['ratio_learning_over_poisson']:.2f}")
    return fig


def _raster_figure(d: dict, n_show: int = 12):
    """Trial 0 of ``n_show`` active neurons spread over the teacher's rates, teacher and student paired."""
    dt = float(d["dt_ms"])
    counts = d["teacher_a"][:, 0].sum(0) + d["student"][:, 0].sum(0)
    active = np.nonzero(counts > 0)[0]
    active = active[np.argsort(d["teacher_a"][:, 0, active].sum(0), kind="stable")]
    pick = np.sort(active[np.unique(np.linspace(0, len(active) - 1, min(n_show, len(active))).astype(int))]) \
        if len(active) else np.arange(min(n_show, counts.size))
    ct = d.get("cell_type")
    fig, axr = _figure(figsize=(9, 0.35 * 2 * max(len(pick), 1) + 1.4))
    axr = axr[0, 0]
    for i, n in enumerate(pick):
        for j, (k, c) in enumerate((("teacher_a", "k"), ("student", "tab:red"))):
            t = np.nonzero(d[k][:, 0, n])[0] * dt
            axr.vlines(t, 2 * i + j + 0.1, 2 * i + j + 0.9, color=c, lw=0.8,
                       label=("teacher", "student")[j] if i == 0 else None)
    axr.set_yticks(2 * np.arange(len(pick)) + 1.0,
                   [f"{n}" + (f" ({ct[n]})" if ct is not None else "") for n in pick], fontsize=7)
    axr.set(xlabel="time (ms)", ylabel="neuron (teacher / student rows)", xlim=(0, d["teacher_a"].shape[0] * dt),
            title=f"trial 0, same inputs: {len(pick)} active neurons spread over the teacher's rates")
    axr.legend(loc="upper right", fontsize=7, ncol=2, framealpha=0.8)
    return fig


def _factor_names(key: str, shape) -> list[str] | None:
    """Names of the points of a parameter: scaling (post E/I x pre E/I/input) -> 'pre→post'."""
    if key == "scaling" and tuple(shape) == (2, 3):
        return [f"{pre}→{post}" for post in "EI" for pre in ("E", "I", "input")]
    return None


def _identifiability_figure(p: dict, keys: list[str]):
    ident = {}
    fig, axi = _figure(1, len(keys), figsize=(4.8 * len(keys), 4.0))
    for a, k in zip(axi[0], keys):
        t, r = np.abs(p[f"{k}_teacher"]).ravel(), np.abs(p[f"{k}_recovered"]).ravel()
        i0 = np.abs(p[f"{k}_initial"]).ravel()
        m = error_measures(t, r)
        names = _factor_names(k, p[f"{k}_teacher"].shape)
        a.scatter(t, i0, s=16, marker="x", color="0.5", label="initial")
        for x, y0, y1 in zip(t, i0, r):
            a.plot([x, x], [y0, y1], color="0.75", lw=0.6, zorder=0)
        if names:  # one colour per named factor, named in the legend
            for q, (name, x, y) in enumerate(zip(names, t, r)):
                a.scatter([x], [y], s=30, color=f"C{q}", marker="os^Dvp"[q % 6], label=f"{name} recovered")
        else:
            a.scatter(t, r, s=14, color="C1", label="recovered")
        lim = [0, max(t.max(), r.max(), i0.max()) * 1.08]
        a.plot(lim, lim, "k--", lw=0.8, label="identity")
        what = "factor (pre→post)" if names else "magnitude"
        corr = "" if m["correlation"] is None else f"r = {m['correlation']:.3f}, "
        a.set(title=f"{k}: {corr}max rel. err {m['max_relative_error']:.3f}\nmax |log err| "
                    f"{m['max_abs_log_error']:.3f}", xlabel=f"true {what}", ylabel=f"fitted {what}")
        a.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        ident[k] = {key: v for key, v in m.items() if key not in ("true", "recovered")}
    return fig, ident


def _curvature(summ: dict, figdir: Path, paths: list) -> dict | None:
    """The fit's curvature report (verdicts, flat directions) and its figure, if the summary has one."""
    rep = summ.get("identifiability")
    if not rep or "skipped" in rep:
        return rep
    paths.append(save(curvature_figure(rep, f"{summ.get('name', 'student')}: identifiability at the fitted point"),
                      figdir / "curvature.png"))
    return {"verdicts": {n: row["verdict"] for n, row in rep["per_factor"].items()},
            "not_identifiable": rep["not_identifiable"], "flat_directions": rep["flat_directions"],
            "eigenvalues": rep["eigenvalues"], "criterion": rep["criterion"], "lines": verdict_lines(rep)}


def student_report(out_dir, figdir=None) -> list[Path]:
    """Figures into ``figdir`` (default DIR/figures/student) and DIR/student_report.json; returns the
    paths written (the report last)."""
    out = Path(out_dir)
    figdir = Path(figdir) if figdir is not None else out / "figures" / "student"
    d = dict(np.load(out / "comparison.npz"))
    v = variability(d)
    paths = [save(_variability_figure(v), figdir / "variability.png"),
             save(_raster_figure(d), figdir / "raster.png")]
    ident = {}
    pz = out / "params.npz"
    if pz.exists():
        p = dict(np.load(pz))
        summ = json.loads((out / "student_summary.json").read_text()) if (out / "student_summary.json").exists() else {}
        keys = [k for k in ("scaling", "rec_weight", "ff_weight") if k in summ.get("recovered", {})] or ["scaling"]
        fig, ident = _identifiability_figure(p, keys)
        paths.append(save(fig, figdir / "identifiability.png"))
        curv = _curvature(summ, figdir, paths)
        if curv is not None:
            ident["curvature"] = curv
    report = {"poisson": v["poisson"], "learning": v["learning"],
              "ratio_learning_over_poisson": v["ratio_learning_over_poisson"], "identifiability": ident}
    (out / "student_report.json").write_text(json.dumps(report, indent=1))
    return paths + [out / "student_report.json"]


if __name__ == "__main__":  # python -m neurodsl.analysis.student DIR
    import sys
    for _p in student_report(Path(sys.argv[1])):
        print(f"wrote {_p}")
