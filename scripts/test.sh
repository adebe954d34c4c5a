#!/usr/bin/env bash
# Sets up what is missing (scripts/install.sh; quick when all is there), then
# runs the test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
"${PYTHON:-python}" -m pytest -q "$@"
