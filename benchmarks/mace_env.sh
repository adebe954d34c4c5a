#!/usr/bin/env bash
# A virtual environment for the MACE baseline (benchmarks/mace_baseline.py).
# mace-torch pins e3nn 0.4.4, which acn_pyg cannot share, so MACE gets its own
# environment. It sees this interpreter's packages (torch, PyG, acn_pyg's
# dependencies) so that both models run on the same torch build; e3nn 0.4.4 and
# mace-torch are installed inside it and shadow the outer e3nn there only.
#
#   bash benchmarks/mace_env.sh            # creates .venv-mace
#   MACE_VENV=/path/to/venv bash benchmarks/mace_env.sh
#
# e3nn 0.4.4 loads its constants with torch.load, which torch >= 2.6 refuses
# with weights_only; mace_baseline.py sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1
# for its own process.
set -euo pipefail
VENV=${MACE_VENV:-.venv-mace}
PYTHON=${PYTHON:-python3}
"$PYTHON" -m venv --system-site-packages "$VENV"
# torch comes from the outer interpreter: pip must not replace it with
# another build, so the pins name the version already installed.
TORCH=$("$VENV/bin/python" -c "import torch; print(torch.__version__.split('+')[0])")
echo "torch==$TORCH" > "$VENV/constraints.txt"
"$VENV/bin/pip" install -q -c "$VENV/constraints.txt" "mace-torch==0.3.16" "e3nn==0.4.4"
TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 "$VENV/bin/python" -c \
    "import e3nn, mace, torch; print('MACE environment:', '$VENV', 'e3nn', e3nn.__version__, 'torch', torch.__version__)"
