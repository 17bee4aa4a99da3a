#!/bin/bash
# Continues one default LM from its checkpoints (checkpoints/default-DIRECTION,
# written by the settings of the shipped LMs, docs/lm_pretraining.md), niced,
# 1 thread, so it only takes idle CPU. Usage: bash project/resume_lm.sh forward|backward
# Without those checkpoints (a fresh clone) it starts a run there from the shipped
# LM's weights, at the first corpus buffer they have not seen; export it with
# python project/pretrain_lms.py --export-continuation checkpoints/default-DIRECTION DEST
# The argument list is built in project/pretrain_lms.py (pretrain_lm_command).
set -euo pipefail
DIRECTION=${1:?usage: bash project/resume_lm.sh forward|backward}
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
exec nice -n 19 python project/pretrain_lms.py --resume "$DIRECTION" --data-dir "${DATA_DIR:-../shared/data}"
