"""Identifiability of fitted parameters from the loss's curvature (issue 13): numbers, verdicts, figure.

:func:`curvature_report` turns what :mod:`neurodsl.runners.identifiability` measured on fixed
windows of data at the fitted point -- per window the Gauss-Newton curvature ``H_w`` of the loss
in the trained log-parameters, its gradient ``g_w`` and its value ``L_w`` -- into a JSON-ready
report (numpy only; no jax here):

* the mean curvature ``H`` over the windows, its eigenvalues (stiffest first) and eigenvectors;
* per eigen-direction k the *standard error* of the fitted point along it, from the
  window-to-window scatter of the gradient (sandwich: ``se_k = sqrt(v_k' C_g v_k / n) / lambda_k``,
  ``C_g`` the covariance of ``g_w`` over the ``n`` windows), and the loss rise of a step of the
  tolerance along it, ``0.5 lambda_k log(1 + tol)^2``, beside the loss's noise across windows;
* **flat** directions: ``lambda_k <= rel_floor * lambda_max`` (numerically no curvature) or
  ``se_k > log(1 + tol)`` (the data cannot pin it to within ``tol``);
* per factor its *flat share* ``sum over flat k of v_k[i]^2`` (how much of the factor's axis lies in
  flat directions) and its standard error; verdict ``recovered`` (flat share <= ``flat_share`` and
  error <= ``tol``), ``not identifiable from these data`` (flat share above it) or
  ``identifiable, not recovered`` (curved but off: the fit has not converged there); without a
  truth (homeostatic) ``fixed by the targets`` / ``not identifiable from these targets``.

:func:`error_measures` compares true and recovered values with measures that are always defined
(relative and log errors); the correlation only where the truth varies.  :func:`curvature_figure`
draws the eigen-spectrum, the eigenvectors and the loss profiles along each factor.
"""
from __future__ import annotations

import numpy as np

from .plots import _figure

TOL = 0.05          # a factor counts as recovered / pinned within 5 %
REL_FLOOR = 1e-8    # eigenvalues below this fraction of the largest count as no curvature: a Jacobian
                    # accurate to 1e-4 of its norm (float32 through thousands of steps) resolves singular
                    # values down to 1e-4 of the largest, i.e. eigenvalues of J'J down to 1e-8; above that,
                    # whether the data pin a direction is the standard error's call (1e-4 before 2026-12-02
                    # called directions pinned to 0.2 % flat at the default student size)
FLAT_SHARE = 0.1    # a factor whose axis lies more than this much in flat directions is not identifiable

RECOVERED, NOT_IDENTIFIABLE, NOT_RECOVERED = ("recovered", "not identifiable from these data",
                                              "identifiable, not recovered")
FIXED, NOT_FIXED = "fixed by the targets", "not identifiable from these targets"


def factor_names(key: str, shape) -> list[str]:
    """Names of a parameter's points: scaling (post E/I x pre E/I/input) -> 'post<-pre', e.g. 'E<-I'."""
    if key in ("scaling", "log_scaling") and tuple(shape) == (2, 3):
        return [f"{post}<-{pre}" for post in "EI" for pre in ("E", "I", "input")]
    return [f"{key}[{i}]" for i in range(int(np.prod(shape)))]


def error_measures(true, recovered, *, keep: int = 64) -> dict:
    """Relative and log errors of ``recovered`` vs ``true`` magnitudes (always defined), their maxima,
    and the Pearson correlation only where the truth varies (else None, with the reason)."""
    a, b = np.abs(np.asarray(true, np.float64)).ravel(), np.abs(np.asarray(recovered, np.float64)).ravel()
    rel = np.abs(b - a) / np.maximum(a, 1e-12)
    log_err = np.log(np.maximum(b, 1e-12) / np.maximum(a, 1e-12))
    varies = a.size > 1 and a.std() > 1e-9 * max(np.abs(a).max(), 1e-12)
    small = a.size <= keep
    out = {"true": a.tolist() if small else None, "recovered": b.tolist() if small else None,
           "relative_error": rel.tolist() if small else None, "log_error": log_err.tolist() if small else None,
           "max_relative_error": float(rel.max()), "median_relative_error": float(np.median(rel)),
           "max_abs_log_error": float(np.abs(log_err).max()), "rms_log_error": float(np.sqrt(np.mean(log_err ** 2))),
           "correlation": float(np.corrcoef(a, b)[0, 1]) if varies and b.std() > 0 else None}
    if not varies:
        out["correlation_note"] = "undefined: the true values do not vary"
    return out


def _directions(H: np.ndarray, G: np.ndarray, tol: float, rel_floor: float):
    lam, vec = np.linalg.eigh(0.5 * (H + H.T))
    order = np.argsort(lam)[::-1]
    lam, vec = np.maximum(lam[order], 0.0), vec[:, order]
    for k in range(vec.shape[1]):  # sign convention: largest component positive
        if vec[np.argmax(np.abs(vec[:, k])), k] < 0:
            vec[:, k] = -vec[:, k]
    n = G.shape[0]
    Cg = np.cov(G, rowvar=False, ddof=1).reshape(H.shape) if n > 1 else np.zeros_like(H)
    spread = np.sqrt(np.maximum(np.einsum("ik,ij,jk->k", vec, Cg, vec), 0.0) / n)
    lam_max = lam.max() if lam.size else 0.0
    curved = lam > rel_floor * lam_max if lam_max > 0 else np.zeros(lam.shape, bool)
    se = np.where(curved, spread / np.where(curved, lam, 1.0), np.inf)
    flat = ~curved | (se > np.log1p(tol))
    return lam, vec, se, flat, Cg


def _describe(v: np.ndarray, names: list[str], floor: float = 0.2) -> str:
    parts = [f"{'+' if c >= 0 else '-'}{abs(c):.2f} {names[i]}" for i, c in enumerate(v) if abs(c) >= floor]
    return " ".join(parts) or "(spread over all)"


def curvature_report(H_w, g_w, loss_w, names: list[str], *, log_error=None, tol: float = TOL,
                     rel_floor: float = REL_FLOOR, flat_share: float = FLAT_SHARE, profiles: dict | None = None,
                     truth: bool = True, **meta) -> dict:
    """The identifiability report (see the module docstring).  ``H_w`` (n, P, P), ``g_w`` (n, P),
    ``loss_w`` (n,) per window; ``log_error`` (P,) log(recovered / true) where a truth exists;
    ``profiles``: {name: {"relative_change": [...], "loss": [...]}}; ``meta`` is stored as given."""
    H_w, G = np.asarray(H_w, np.float64), np.asarray(g_w, np.float64)
    H = H_w.mean(0)
    lam, vec, se, flat, Cg = _directions(H, G, tol, rel_floor)
    share = (vec[:, flat] ** 2).sum(1)
    curved = lam > rel_floor * lam.max() if lam.size and lam.max() > 0 else np.zeros(lam.shape, bool)
    pinv = (vec[:, curved] / lam[curved]) @ vec[:, curved].T
    se_factor = np.sqrt(np.maximum(np.diag(pinv @ Cg @ pinv) / max(G.shape[0], 1), 0.0))
    loss_w = np.asarray(loss_w, np.float64)
    per = {}
    for i, name in enumerate(names):
        ident = bool(share[i] <= flat_share)
        row = {"flat_share": float(share[i]), "standard_error_log": float(se_factor[i]) if ident else None,
               "curvature": float(H[i, i]), "identifiable": ident}
        if log_error is not None and truth:
            e = float(log_error[i])
            row.update(log_error=e, relative_error=float(abs(np.expm1(e))))
            row["verdict"] = NOT_IDENTIFIABLE if not ident else RECOVERED if abs(e) <= np.log1p(tol) else NOT_RECOVERED
        else:
            row["verdict"] = FIXED if ident else NOT_FIXED
        per[name] = row
    step = np.log1p(tol)
    return {
        **meta, "factor_names": list(names), "tolerance": tol, "relative_floor": rel_floor,
        "flat_share_limit": flat_share,
        "criterion": (f"direction k is flat if lambda_k <= {rel_floor:g} * lambda_max or its standard error "
                      f"se_k = sqrt(v_k' C_g v_k / n) / lambda_k > log(1 + {tol:g}) (C_g: covariance of the "
                      f"per-window gradients, n windows); a factor is not identifiable if more than "
                      f"{flat_share:g} of its axis lies in flat directions, recovered if identifiable and "
                      f"|log error| <= log(1 + {tol:g})"),
        "windows": int(G.shape[0]),
        "loss": {"per_window": loss_w.tolist(), "mean": float(loss_w.mean()),
                 "std_across_windows": float(loss_w.std(ddof=1)) if loss_w.size > 1 else 0.0},
        "curvature": H.tolist(), "gradient_mean": G.mean(0).tolist(),
        "eigenvalues": lam.tolist(), "eigenvectors": vec.T.tolist(),
        "direction_standard_error_log": [float(x) if np.isfinite(x) else None for x in se],
        "loss_rise_at_tolerance": (0.5 * lam * step ** 2).tolist(), "flat": flat.tolist(),
        "flat_directions": [{"eigenvalue": float(lam[k]), "description": _describe(vec[:, k], names)}
                            for k in np.nonzero(flat)[0]],
        "stiff_directions": [{"eigenvalue": float(lam[k]), "description": _describe(vec[:, k], names)}
                             for k in np.nonzero(~flat)[0]],
        "per_factor": per, "profiles": profiles or {},
        "not_identifiable": [n for n in names if not per[n]["identifiable"]],
    }


def verdict_lines(report: dict) -> list[str]:
    """One console line per factor."""
    out = []
    for name, row in report["per_factor"].items():
        err = f", error {100 * row['relative_error']:.1f} %" if "relative_error" in row else ""
        se = row["standard_error_log"]
        out.append(f"  {name:9s} {row['verdict']}{err} (flat share {row['flat_share']:.2f}"
                   + (f", s.e. {100 * se:.2f} %)" if se is not None else ")"))
    return out


def curvature_figure(report: dict, title: str = ""):
    """Eigen-spectrum (flat directions marked), eigenvectors, loss profiles along each factor."""
    names, lam = report["factor_names"], np.asarray(report["eigenvalues"])
    vec, flat = np.asarray(report["eigenvectors"]).T, np.asarray(report["flat"], bool)
    fig, ax = _figure(1, 3, figsize=(15, 4.2))
    ax = ax[0]
    top = lam.max() if lam.size and lam.max() > 0 else 1.0
    shown = np.maximum(lam, top * 1e-9)
    k = np.arange(1, lam.size + 1)
    ax[0].semilogy(k[~flat], shown[~flat], "o", color="C0", label="curved (pinned by the data)")
    ax[0].semilogy(k[flat], shown[flat], "x", color="C3", ms=9, label="flat (not pinned; 0 drawn at 1e-9 of max)")
    ax[0].axhline(top * report["relative_floor"], color="0.5", ls="--", lw=0.8, label="relative floor")
    ax[0].set(xlabel="eigen-direction (stiffest first)", ylabel="curvature eigenvalue (loss / (log factor)²)",
              title="Gauss-Newton curvature spectrum", xticks=k)
    ax[0].legend(fontsize=7)
    im = ax[1].imshow(vec, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax[1].set_yticks(range(len(names)), names, fontsize=8)
    ax[1].set_xticks(range(lam.size), [f"{i + 1}{'*' if f else ''}" for i, f in enumerate(flat)])
    ax[1].set(xlabel="eigen-direction (* flat)", ylabel="factor (post<-pre)", title="eigenvectors")
    fig.colorbar(im, ax=ax[1], label="eigenvector component (unitless)")
    lo, hi = 0.0, 0.0
    for q, (name, pr) in enumerate(report.get("profiles", {}).items()):
        x = 100 * np.asarray(pr["relative_change"])
        y = np.asarray(pr["loss"]) - pr["loss_at_fit"]
        lo, hi = min(lo, y.min()), max(hi, y.max())
        ax[2].plot(x, y, "o-", color=f"C{q}", ms=3, label=name)
        i = names.index(name)
        d = np.linspace(np.log1p(x.min() / 100), np.log1p(x.max() / 100), 50)
        gn = report["gradient_mean"][i] * d + 0.5 * report["curvature"][i][i] * d ** 2
        ax[2].plot(100 * np.expm1(d), gn, "--", color=f"C{q}", lw=0.7,
                   label="Gauss-Newton quadratic" if q == 0 else None)
    noise = report["loss"]["std_across_windows"] / np.sqrt(max(report["windows"], 1))
    ax[2].axhline(noise, color="0.5", ls=":", lw=0.8, label="loss noise (s.e. over windows)")
    pad = 0.1 * max(hi - lo, noise, 1e-12)
    ax[2].set_ylim(lo - pad, max(hi, noise) + pad)
    ax[2].set(xlabel="change of the factor from the fitted value (%)",
              ylabel="loss − loss at the fit (dimensionless)", title="loss along each factor (others fixed)")
    ax[2].legend(fontsize=7, ncol=2)
    if title:
        fig.suptitle(title)
    return fig
