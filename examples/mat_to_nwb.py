"""Convert an rnn_export recording (.mat/.npz/.nc) to NWB and check that it reads back the same.

    python examples/mat_to_nwb.py neurodsl/data/synthetic_rnn_export.mat results/synthetic.nwb
    python examples/mat_to_nwb.py ../shared/data/activity/rnn_export_Newton_08_13_2025_SC.mat results/sc.nwb

(the shared file is read where it is, never copied into the repository).  An rnn_export holds
binned rates, count / bin; the NWB copy holds spike times in a units table -- what real NWB files
hold -- rebuilt from the integer counts, evenly inside each bin (one spike: at the bin centre),
so binning them at the same width gives the counts back exactly (neurodsl.io.nwb_write).
Fit the copy with the same spec plus:

    data:
      file: results/synthetic.nwb
      nwb: {align: time_zero}     # time 0 of each trial = the export's time_axis 0

The script prints that block and whether rates, inputs and labels load identically.
"""
import sys
import warnings
from pathlib import Path

import numpy as np

from neurodsl.io.nwb_write import write_nwb
from neurodsl.io.rnn_export import load_rnn_export
from neurodsl.io.rnn_export_files import read_raw


def main(src: str, dst: str) -> int:
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    raw, fmt, _ = read_raw(src)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        before = load_rnn_export(src)  # validates the export first
        write_nwb(dst, raw, source=src)
        after = load_rnn_export(dst, nwb={"dt_ms": float(before.attrs["bin_size_ms"]), "align": "time_zero"})
    print(f"wrote {dst} ({Path(dst).stat().st_size / 1e6:.1f} MB) from {src} ({fmt})")
    ok = True
    for name in sorted(before.variables):
        a, b = before[name].values, after[name].values if name in after.variables else None
        same = b is not None and a.dtype == b.dtype and np.array_equal(a, b)
        close = b is not None and a.dtype.kind == "f" and a.shape == b.shape and np.allclose(a, b, rtol=0, atol=1e-9)
        ok &= bool(same or (close and name == "time"))
        verdict = "identical" if same else "within 1e-9 (float noise of the export)" if close else "DIFFERS"
        print(f"  {name:20s} {verdict}")
    print(f"data:\n  file: {dst}\n  nwb: {{align: time_zero}}")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1], sys.argv[2]))
