#!/usr/bin/env bash
# Install the packaged pipeline and spacy_ldnet into a fresh virtualenv and
# annotate text offline. Usage: bash project/check_package.sh DIST_DIR PACKAGE_NAME
set -euo pipefail
cd "$(dirname "$0")/.."
DIST="$1"; NAME="$2"
WHEEL="$(ls "$DIST"/*.whl | head -n 1)"
echo "[check-package] wheel: $WHEEL ($(du -h "$WHEEL" | cut -f1))"
# The CoNLL data is research-use only: the wheel must hold none of it.
python - "$WHEEL" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
bad = [n for n in names if n.endswith((".spacy", ".conll", ".iob")) or n.rsplit("/", 1)[-1] in {"train.txt", "dev.txt", "test.txt"}]
if bad:
    sys.exit(f"[check-package] corpus files found in the wheel: {bad}")
print(f"[check-package] {len(names)} files in the wheel, no corpus files")
PY
VENV=.tmp/venv-package-check
rm -rf "$VENV"; python -m venv "$VENV"
"$VENV/bin/python" -m pip install -q torch==2.13.0 . "$WHEEL"
HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 "$VENV/bin/python" - "$NAME" <<'PY'
import sys, spacy
nlp = spacy.load(sys.argv[1])
texts = ["Angela Merkel met Emmanuel Macron in Paris on Tuesday .",
         "Shares of Apple Inc. rose 3 percent in New York ."]
found = 0
for doc in nlp.pipe(texts):
    print("  ", [(e.text, e.label_) for e in doc.ents])
    found += len(doc.ents)
if not found:
    sys.exit("[check-package] the packaged pipeline found no entities")
print(f"[check-package] OK: {sys.argv[1]} loads from a fresh virtualenv and annotates offline")
PY
