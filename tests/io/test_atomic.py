"""Atomic writes: file modes follow the umask; temporaries of killed writers are removed."""
from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time

import numpy as np
import pytest
import xarray as xr

from neurodsl.io import atomic
from neurodsl.io.dataset import write_netcdf
from neurodsl.io.structure import NetworkStructure, save_structure
from neurodsl.runners.checkpoint import atomic_write_text, save_checkpoint


@pytest.fixture
def umask022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _mode(p):
    return stat.S_IMODE(os.stat(p).st_mode)


def test_written_files_follow_the_umask(tmp_path, umask022):
    s = NetworkStructure(cell_type=np.array(["E", "I"]), rec_pre=np.array([0]), rec_post=np.array([1]),
                         rec_weight=np.array([0.5], np.float32), ff_pre=np.array([0]), ff_post=np.array([0]),
                         ff_weight=np.array([1.0], np.float32), n_inputs=1)
    paths = [atomic_write_text(tmp_path / "log.json", "[]"),
             save_checkpoint(tmp_path / "ck" / "latest.npz", {"a": np.ones(2)}, {"epoch": 1}),
             save_structure(s, tmp_path / "network_structure.npz"),
             write_netcdf(xr.Dataset({"x": ("t", np.arange(3.0))}), tmp_path / "fit.nc")]
    assert {p.name: oct(_mode(p)) for p in paths} == {p.name: "0o644" for p in paths}
    os.umask(0o077)
    assert _mode(atomic_write_text(tmp_path / "private.json", "{}")) == 0o600


def test_temporaries_of_a_killed_writer_are_removed(tmp_path):
    """A writer SIGKILLed mid-write leaves its .tmp; the next write into the folder removes it,
    while a live process's temporary and fresh foreign files stay."""
    code = ("import sys, time; from neurodsl.io import atomic; fd, tmp = atomic.temp_file(sys.argv[1]); "
            "print(tmp, flush=True); time.sleep(60)")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "epoch_00015.npz")],
                         stdout=subprocess.PIPE, text=True)
    dead_tmp = p.stdout.readline().strip()
    assert os.path.exists(dead_tmp) and p.poll() is None
    p.send_signal(signal.SIGKILL)
    p.wait()
    live_tmp = tmp_path / f".other.json.@{atomic._HOST}.{os.getpid()}.abcdefgh.tmp"  # a live writer's
    live_tmp.write_text("x")
    legacy_old = tmp_path / ".metrics.json.ab12cd34.tmp"           # an older version's, 2 h old
    legacy_old.write_text("x")
    os.utime(legacy_old, (time.time() - 7200, time.time() - 7200))
    legacy_new = tmp_path / ".metrics.json.ef56gh78.tmp"           # fresh: could be in progress
    legacy_new.write_text("x")
    removed = atomic.sweep_stale(tmp_path)
    assert sorted(r.name for r in removed) == sorted([os.path.basename(dead_tmp), legacy_old.name])
    assert os.path.exists(live_tmp) and legacy_new.exists()


def test_first_write_into_a_folder_sweeps_it(tmp_path):
    host = atomic._HOST
    stale = tmp_path / f".epoch_00015.npz.@{host}.999999999.abcdefgh.tmp"  # pid that cannot exist
    stale.write_text("half a checkpoint")
    save_checkpoint(tmp_path / "latest.npz", {"a": np.zeros(1)}, {"epoch": 0})
    assert not stale.exists() and sorted(os.listdir(tmp_path)) == ["latest.npz"]
