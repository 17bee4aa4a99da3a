#!/usr/bin/env bash
# The test command (README; .ci/run calls exactly this): set up .venv, run the suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash project/setup_env.sh .venv
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec .venv/bin/python -m pytest -q -p no:cacheprovider tests "$@"
