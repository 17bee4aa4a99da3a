#!/usr/bin/env bash
# Continue the shipped forward and backward LMs on one GPU, both at once, on the
# Wikipedia shard written by `python project/lm_shard.py .devdata` (text they have
# not seen), then export each in float16 (`pretrain_lms.export_continuation`).
#
# Usage: bash project/gpu_continue_lms.sh [DEVICE=cuda:0] [MAX_TIME=420s] [BATCH=256] [OUT=lms/ldnet-gpu]
# Needs only torch, numpy, safetensors and typer (no spaCy): it runs on a bare GPU
# machine beside a copy of the checkout with .devdata in it (the device tool's `carry`).
# The settings are the shipped LMs' (pretrain_lms.pretrain_lm_command) except the batch
# (256 sentences), no mid-run validation, and the input table (.devdata's GloVe rows of
# the LMs' vocabulary, the same rows as the whole table). Runs go to runs_gpu/ and resume.
# The exports have no vocab.txt: copy it from spacy_ldnet/lm/default/DIRECTION/.
set -uo pipefail
cd "$(dirname "$0")/.."
DEV=${1:-cuda:0}; MAXT=${2:-420s}; BS=${3:-256}; O=${4:-lms/ldnet-gpu}
PY=${PY:-python3}
export PYTHONUNBUFFERED=1
mkdir -p "$O" runs_gpu
( nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY -c "import torch; print(torch.__version__, torch.cuda.is_available())"; nproc ) > "$O/env.txt" 2>&1
for d in forward backward; do
  $PY -m spacy_ldnet.cli pretrain-lm --train .devdata/wiki_shard.tok.txt.gz --valid .devdata/wiki_valid.tok.txt.gz \
    --output runs_gpu/$d --direction $d --output-layer vmf --layers 10 --hidden 128 --embed-dim 50 \
    --input-embeddings glove --freeze-input --dropout 0.0 --layer-dropout 0.1 --batch-size "$BS" --lr 0.001 \
    --max-time "$MAXT" --checkpoint-every 2000 --eval-every 1000000 --valid-tokens 20000 --nn-eval-tokens 20000 \
    --log-every 200 --seed 1 --threads 4 --device "$DEV" --no-progress --glove .devdata/glove_vocab30k.50d.txt.gz \
    --init-from spacy_ldnet/lm/default/$d ${EXTRA:-} > runs_gpu/$d.stdout 2>&1 &
done
wait
for d in forward backward; do
  $PY -c "
import sys; sys.path.insert(0, 'project')
from pretrain_lms import export_continuation
export_continuation('runs_gpu/$d', '$O/$d', ['.devdata/wiki_shard.tok.txt.gz'])
" >> runs_gpu/$d.stdout 2>&1
  rm -f "$O/$d/vocab.txt"
  cat runs_gpu/$d.stdout runs_gpu/$d/log.jsonl runs_gpu/$d/metrics.json > "$O/$d.log" 2>&1
  tail -n 2 runs_gpu/$d.stdout
done
