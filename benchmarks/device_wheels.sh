#!/usr/bin/env bash
# Wheels that the device machine's image lacks (its python3 is 3.12 with JAX/CUDA, numpy, scipy,
# xarray, numba, optax, matplotlib, h5py, click, pyyaml, tqdm already there): fetched HERE into
# .whl/ (git-ignored via .git/info/exclude), carried with `carry: [".whl"]`, installed by
# benchmarks/device.sh.  Versions: the pins of setup.cfg and what the test venv resolved.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
      --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
get() { "${PYTHON:-python3}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
          --implementation cp "${plat[@]}" -d .whl "$@"; }
get brainstate==0.5.4 brainevent==0.2.1 braintools==0.3.0 brainunit==0.5.2 saiunit==0.5.2 array-api-compat==1.16.0 \
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
    netCDF4==1.7.5.1.post1 cftime==1.6.6.1
ls -la .whl
