#!/usr/bin/env bash
# Installs acn_pyg and everything its tests need into the active Python.
# torch 2.13 (CPU) comes from the local wheel store; torch_scatter and
# torch_cluster exist on PyPI only as sources and are compiled against that
# torch (about 12 minutes on two cores), unless they already import.
# With --benchmarks it also compiles torch_sparse (about 6 more minutes), which
# PyG's DimeNet/DimeNet++ baselines need.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}

# Nothing to do when this checkout is installed with everything it needs.
if "$PY" - 2>/dev/null <<'CHECK'; then
import importlib.util, os
import acn_pyg, ase, e3nn, matplotlib, pandas, pytest, torch, torch_cluster  # noqa
import torch_geometric, torch_scatter, tqdm  # noqa
assert importlib.util.find_spec("qm9pack")  # its data files, read without importing it
assert torch.__version__.startswith("2.13.")
assert os.path.samefile(os.path.dirname(acn_pyg.__file__), "acn_pyg")
CHECK
    echo "acn_pyg $("$PY" -c 'import acn_pyg; print(acn_pyg.__version__)') and its dependencies are installed"
    [ "${1:-}" = "--benchmarks" ] || exit 0
fi

"$PY" -m pip install --quiet "torch==2.13.0"
"$PY" -m pip install --quiet "torch_geometric==2.8.1" "e3nn==0.6.0" "ase>=3.23" tqdm ninja \
    pytest qm9pack pandas matplotlib
if ! "$PY" -c "import torch_scatter, torch_cluster" 2>/dev/null; then
    echo "compiling torch_scatter and torch_cluster (about 12 minutes)..."
    MAX_JOBS=${MAX_JOBS:-2} "$PY" -m pip install --quiet --no-build-isolation \
        "torch_scatter==2.1.2" "torch_cluster==1.6.3"
fi
if [ "${1:-}" = "--benchmarks" ] && ! "$PY" -c "import torch_sparse" 2>/dev/null; then
    echo "compiling torch_sparse (about 6 minutes)..."
    MAX_JOBS=${MAX_JOBS:-2} "$PY" -m pip install --quiet --no-build-isolation "torch_sparse==0.6.18"
fi
"$PY" -m pip install --quiet --no-build-isolation -e ".[test,qm9]"
"$PY" -c "import acn_pyg, torch_cluster, torch_scatter; print('acn_pyg', acn_pyg.__version__, 'installed')"
