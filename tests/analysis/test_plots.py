"""Figures render and are written as PNG; the package imports stay light."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from neurodsl.analysis import pca, plots, project, psth, stats

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(fig, path, dpi=40):
    """Save (low dpi keeps the suite fast) and check a real PNG was written."""
    assert isinstance(fig, Figure)
    out = plots.save(fig, path, dpi=dpi)
    assert out.exists() and out.stat().st_size > 500
    assert out.read_bytes()[:8] == PNG_MAGIC


def test_save_default_png_dpi_120(tmp_path):
    fig = plots.rate_scatter([1.0, 2.0, 3.0], [1.0, 2.5, 2.9])
    width_in, height_in = fig.get_size_inches()
    out = plots.save(fig, tmp_path / "a" / "b.png")  # parents created
    png = out.read_bytes()
    assert png[:8] == PNG_MAGIC
    width_px, height_px = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert (width_px, height_px) == (round(width_in * 120), round(height_in * 120))


def _psth_pair():
    rng = np.random.default_rng(0)
    t = np.arange(50) * 10.0
    target = xr.DataArray(
        10 + 5 * np.sin(t[None, :, None] / 80 + rng.uniform(0, 6, (3, 1, 12))),
        dims=("stim", "time", "neuron"),
        coords={"stim": [0, 1, 2], "time": t, "neuron": np.arange(12),
                "ei": ("neuron", ["E"] * 9 + ["I"] * 3)},
        attrs={"units": "sp/s", "bin_ms": 10.0})
    return target + rng.normal(0, 1, target.shape), target


def test_spiking_figures(poisson_ds, tmp_path):
    _check_png(plots.raster(poisson_ds, neurons=30, trial=1, t_range=(0, 1000)),
               tmp_path / "raster.png")
    _check_png(plots.raster(poisson_ds), tmp_path / "raster_all.png")
    _check_png(plots.rate_histograms(poisson_ds), tmp_path / "rates.png")
    _check_png(plots.cv_histogram(poisson_ds), tmp_path / "cv.png")
    _check_png(plots.cv_histogram(stats.cv_isi(poisson_ds)), tmp_path / "cv_da.png")
    _check_png(plots.fano_histogram(poisson_ds), tmp_path / "nested" / "dir" / "fano.png")


def test_rate_scatter_title_has_r(tmp_path):
    a = np.arange(20.0)
    fig = plots.rate_scatter(a, 2 * a + 1, "data", "model")
    assert "r = 1.000" in fig.axes[0].get_title()
    assert fig.axes[0].get_xlabel() == "data (Hz)"
    _check_png(fig, tmp_path / "scatter.png")


def test_connectivity_matrix_sorted_by_ei(tmp_path):
    rng = np.random.default_rng(1)
    ei = np.array(["I", "E", "E", "I", "E"] * 8)
    w = np.abs(rng.normal(size=(40, 40))) * np.where(ei == "E", 1.0, -4.0)[None, :]
    fig = plots.connectivity_matrix(w, ei)
    img = fig.axes[0].get_images()[0].get_array()
    assert np.all(img[:, :24] >= 0) and np.all(img[:, 24:] <= 0)  # E columns first
    lo, hi = fig.axes[0].get_images()[0].get_clim()
    assert lo == -hi  # centred diverging map
    _check_png(fig, tmp_path / "W.png")


def test_pca_and_psth_figures(tmp_path):
    model, target = _psth_pair()
    fit = pca(target, n_components=3)
    _check_png(plots.pca_trajectories(fit), tmp_path / "pca.png")
    _check_png(plots.pca_trajectories(fit, pcs=(1, 3), model=project(model, fit)),
               tmp_path / "pca_model.png")
    fig = plots.psth_panels(model, target, neurons=[0, 3, 10])
    assert sum(ax.get_visible() for ax in fig.axes) == 3
    _check_png(fig, tmp_path / "psth.png")
    _check_png(plots.psth_panels(psth(model.isel(stim=0).rename(time="time")
                                      .expand_dims(trial=2)), target.isel(stim=0)),
               tmp_path / "psth_nocond.png")


def test_package_import_is_light():
    """No matplotlib until a plot is used; never the simulator stack."""
    code = (
        "import sys, neurodsl.analysis as a\n"
        "a.psth; a.cv_isi; a.noise_ceiling; a.pca\n"
        "assert 'matplotlib' not in sys.modules\n"
        "a.raster\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
        "bad = [m for m in ('jax', 'brainpy', 'neurodsl.spec', 'neurodsl.compile',\n"
        "                   'neurodsl.runners') if m in sys.modules]\n"
        "assert not bad, bad\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
