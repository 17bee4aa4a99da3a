#!/bin/bash
# Continues one default LM from its checkpoints (checkpoints/default-DIRECTION,
# written by the settings of the shipped LMs, docs/lm_pretraining.md), niced,
# 1 thread, so it only takes idle CPU. Usage: bash project/resume_lm.sh forward|backward
set -euo pipefail
DIRECTION=${1:?usage: bash project/resume_lm.sh forward|backward}
cd "$(dirname "$0")/.."
D=${DATA_DIR:-../shared/data}/lm
exec nice -n 19 .venv/bin/spacy-ldnet pretrain-lm \
    --train $D/wiki_en.train.tok.txt.gz --train $D/reuters21578.tok.txt.gz \
    --valid $D/wiki_en.valid.tok.txt.gz \
    --output checkpoints/default-$DIRECTION --direction $DIRECTION \
    --vocab checkpoints/vocab30k.txt \
    --output-layer vmf --layers 10 --hidden 128 --embed-dim 50 \
    --input-embeddings glove --freeze-input --dropout 0.0 --layer-dropout 0.1 \
    --batch-size 32 --lr 0.001 --max-time 12h \
    --checkpoint-every 300 --eval-every 1500 --valid-tokens 20000 --nn-eval-tokens 20000 \
    --log-every 50 --seed 1 --threads 1 --device cpu
