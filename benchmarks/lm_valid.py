"""Validation figures of exported LMs (e.g. the shipped ``spacy_ldnet/lm/default``).

Usage:
    python benchmarks/lm_valid.py LM_DIR [LM_DIR ...] [--valid FILE] [--tokens 20000]
        [--output results.json]

Each LM_DIR is a checkpoint directory written by ``save_lm``/``export_model``
(``config.json`` + ``model.safetensors`` + ``vocab.txt``, any storage dtype;
weights are loaded as float32). It is evaluated exactly as ``pretrain-lm``
validates during training (``spacy_ldnet.lm.pretrain.evaluate``): the first
``--tokens`` targets of ``--valid`` (default
``../shared/data/lm/wiki_en.valid.tok.txt.gz``), read in the LM's own direction.
Printed per LM: direction, steps and tokens seen (from ``extra.training``),
validation loss (NLLvMF for continuous outputs, nats per target), and for
continuous outputs nn@1 / nn@10 (share of targets whose GloVe row is among
the 1 / 10 nearest by cosine to the predicted vector); perplexity for
softmax outputs.

Raises SystemExit naming the missing file when the validation text is absent.
"""
import argparse
import json
import sys
from pathlib import Path

import torch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("lm_dirs", nargs="+")
    p.add_argument("--valid", default="../shared/data/lm/wiki_en.valid.tok.txt.gz")
    p.add_argument("--tokens", type=int, default=20000)
    p.add_argument("--output", default=None, help="write the figures to this JSON file")
    args = p.parse_args()
    if not Path(args.valid).is_file():
        raise SystemExit(f"Validation text not found: {args.valid}. Fix: pass --valid PATH (see ../shared/data/lm/SOURCE.md).")
    from spacy_ldnet.lm.checkpoint import load_lm
    from spacy_ldnet.lm.data import Vocab
    from spacy_ldnet.lm.pretrain import PretrainConfig, evaluate

    torch.set_num_threads(1)
    results = []
    for lm_dir in args.lm_dirs:
        model, vocab_list, extra = load_lm(lm_dir)
        cfg = PretrainConfig(
            train=[args.valid], valid=args.valid, output="unused",
            direction=extra.get("direction", model.config.direction),
            output_layer=model.config.output, lowercase=bool(extra.get("lowercase", True)),
            valid_tokens=args.tokens, nn_eval_tokens=args.tokens, progress=False,
        )
        res = evaluate(model, cfg, Vocab(vocab_list, lowercase=cfg.lowercase), torch.device("cpu"))
        training = extra.get("training", {})
        row = {"lm": str(lm_dir), "direction": cfg.direction, "steps": training.get("steps"),
               "tokens_seen": training.get("tokens_seen"), **res}
        results.append(row)
        figs = f"loss {res['valid_loss']:.4f}"
        if "nn_top1" in res:
            figs += f" | nn@1 {100 * res['nn_top1']:.1f}% nn@10 {100 * res['nn_top10']:.1f}% ({res['nn_tokens']} targets)"
        if "valid_ppl" in res:
            figs += f" | ppl {res['valid_ppl']:.1f}"
        print(f"{lm_dir}: {cfg.direction}, {row['steps']} steps, {row['tokens_seen']} tokens | {figs}")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
