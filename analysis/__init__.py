"""neurodsl.analysis -- datasets in, statistics / PSTHs / PCA / figures out.

Depends only on numpy, scipy, xarray (and matplotlib for ``plots``); never on
the simulator.  The numerical modules are imported eagerly (they are light);
the plotting functions are resolved lazily (PEP 562), so matplotlib is loaded
only when a plotting function (or ``neurodsl.analysis.plots``) is first used.

Modules: ``spikes`` (event list -> trains, counts, rates), ``stats`` (rates,
CV, Fano, van Rossum, population summary), ``psth`` (PSTHs, correlations,
noise ceiling), ``pca`` (PCA of PSTHs), ``plots`` (figures, ``save``).

Note: at package level ``psth`` and ``pca`` are the *functions*; import the
modules of the same name with ``from neurodsl.analysis.psth import ...``.
"""
from __future__ import annotations

import importlib

from .spikes import (bin_spikes, duration_ms, rates_from_events, spike_counts,
                     spike_events, spike_trains)
from .stats import (cv_isi, fano_factor, fano_from_rates, mean_rates, per_neuron_fano,
                    per_neuron_rates, population_summary, threshold_ratio, van_rossum_distance,
                    van_rossum_norm)
from .psth import noise_ceiling, psth, psth_correlation, smooth_time, zscore_psth
from .pca import pca, project, variance_captured

_PLOTS = ("raster", "rate_histograms", "cv_histogram", "fano_histogram", "rate_scatter",
          "connectivity_matrix", "pca_trajectories", "psth_panels", "save")

__all__ = [
    "spike_trains", "spike_events", "spike_counts", "bin_spikes", "rates_from_events",
    "duration_ms",
    "per_neuron_rates", "mean_rates", "cv_isi", "fano_factor", "fano_from_rates",
    "per_neuron_fano",
    "van_rossum_distance", "van_rossum_norm", "population_summary", "threshold_ratio",
    "psth", "smooth_time", "zscore_psth", "psth_correlation", "noise_ceiling",
    "pca", "project", "variance_captured",
    *_PLOTS,
]


def __getattr__(name: str):
    if name in _PLOTS:
        return getattr(importlib.import_module(f"{__name__}.plots"), name)
    if name == "plots":
        return importlib.import_module(f"{__name__}.plots")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__) | {"plots"})
