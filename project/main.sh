#!/usr/bin/env bash
# The main command (README): set up .venv, evaluate the shipped NER pipeline
# on the CoNLL-2003 test set, benchmark its speed, annotate example sentences,
# then a short but complete LD-Net run on CoNLL-2003 (train with the shipped
# LMs, layer selection and exact pruning, package, install the wheel in a
# fresh virtualenv), and print a table of F1, words/s, kept layers, LM
# multiply-adds and wall time per step. About 15 minutes on 2 CPU cores.
# Extra arguments go to each `spacy project run` step, e.g.
#   bash project/main.sh --vars.data_dir /path/to/data --vars.quick_steps 1000
# Every published figure: `spacy project run all .` (hours; docs/results.md).
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
mkdir -p training/main
times=training/main/step_times.tsv
: > "$times"
step() {
  local name=$1; shift
  local t0; t0=$(date +%s)
  echo; echo "== [$name] $(date +%T)"
  "$@"
  printf '%s\t%s\n' "$name" "$(( $(date +%s) - t0 ))" >> "$times"
}
step setup bash project/setup_env.sh .venv
export PATH="$PWD/.venv/bin:$PATH" HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
steps=$(python -c 'from pathlib import Path; from weasel.util import load_project_config; print(" ".join(load_project_config(Path(".")).get("workflows", {})["main"]))')
for name in $steps; do  # the steps of the main workflow in project.yml
  step "$name" spacy project run "$name" . "$@"
done
python project/main_report.py --times "$times" --seconds "$(( $(date +%s) - start ))"
