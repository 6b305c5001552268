#!/usr/bin/env bash
# The GPU path in one table (issue "speed and scale"): run on an accelerator machine, e.g.
#   device run (carry .whl):  bash benchmarks/device.sh
# Installs carried wheels (.whl/, fetched here by benchmarks/device_wheels.sh: the brain* packages,
# pydantic and netCDF4, which the device image lacks) into /tmp/site if present,
# then runs benchmarks/device.py (each item in its own process, one table at the end) and
# copies the table to $OUT when that is set.  A few minutes in all.  PYTHON=... picks the interpreter.
set -uo pipefail
cd "$(dirname "$0")/.."
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || { echo "wheel install failed"; exit 1; }
  export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
  export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
# neurodsl.runners / neurodsl.analysis live in runners/ and analysis/ (package_dir): map them
mkdir -p /tmp/neurodsl_pkg/neurodsl
for f in neurodsl/*; do ln -sfn "$PWD/$f" /tmp/neurodsl_pkg/neurodsl/; done
ln -sfn "$PWD/runners" /tmp/neurodsl_pkg/neurodsl/runners
ln -sfn "$PWD/analysis" /tmp/neurodsl_pkg/neurodsl/analysis
export PYTHONPATH=/tmp/neurodsl_pkg:$PYTHONPATH
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || true
"${PYTHON:-python3}" -c "import jax; print('jax', jax.__version__, jax.devices())"
"${PYTHON:-python3}" benchmarks/device.py --timeout "${DEVICE_ITEM_TIMEOUT:-150}" "$@" 2>&1 | tee "${OUT:-/tmp}/device_table.txt"
