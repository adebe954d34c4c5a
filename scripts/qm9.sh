#!/usr/bin/env bash
# Sets up what is missing (scripts/install.sh; quick when all is there), then
# runs the main job: AtomCloudNet on QM9 U0, 1,000 training molecules, a
# 3-minute time budget. Extra arguments go to examples/qm9.py (--help lists them).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
"${PYTHON:-python}" examples/qm9.py "$@"
