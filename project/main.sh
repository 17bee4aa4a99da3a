#!/usr/bin/env bash
# The main job (README): set up .venv, then run the project's `all` workflow:
# convert CoNLL-2003/2000, provide the LMs (shipped, or pretrained with
# --vars.pretrain 1), train/evaluate/benchmark the no-LM and LD-Net pipelines,
# prune, retrain a tagger on the selected LM layers, the same (without the
# retraining) for chunking, package the pruned NER pipeline, check the wheel
# in a fresh virtualenv, print the report.
# Extra arguments go to `spacy project run`, e.g. --vars.data_dir /path/to/data
set -euo pipefail
cd "$(dirname "$0")/.."
bash project/setup_env.sh .venv
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec spacy project run all . "$@"
