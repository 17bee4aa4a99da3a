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
``--valid`` may also be a spaCy ``.spacy`` corpus (e.g. ``corpus/conll03/dev.spacy``,
to measure how well an LM predicts the tagger's own domain): its sentences are
written one per line to a temporary file, deleted afterwards.
Printed per LM: direction, steps and tokens seen (from ``extra.training``),
validation loss (NLLvMF for continuous outputs, nats per target), and for
continuous outputs nn@1 / nn@10 (share of targets whose GloVe row is among
the 1 / 10 nearest by cosine to the predicted vector); perplexity for
softmax outputs.

Raises SystemExit naming the missing file when the validation text is absent.
"""
import argparse
import contextlib
import json
import os
import sys
import tempfile
from pathlib import Path

import torch


@contextlib.contextmanager
def plain_text(path: Path):
    """Yield a path of one tokenized sentence per line: ``path`` itself, or for a
    ``.spacy`` corpus a temporary file of its sentences (deleted on exit; the
    corpus may be research-only data, so no copy is left behind).

    Raises SystemExit naming the file when a ``.spacy`` corpus has no tokens.
    """
    if path.suffix != ".spacy":
        yield path
        return
    import spacy
    from spacy.tokens import DocBin

    nlp = spacy.blank("xx")
    fd, tmp = tempfile.mkstemp(suffix=".txt")
    try:
        n = 0
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for doc in DocBin().from_disk(path).get_docs(nlp.vocab):
                for sent in doc.sents if doc.has_annotation("SENT_START") else [doc]:
                    tokens = [t.text for t in sent if not t.is_space]
                    if tokens:
                        f.write(" ".join(tokens) + "\n")
                        n += len(tokens)
        if not n:
            raise SystemExit(f"{path} holds no tokens. Fix: pass a corpus written by spacy convert (or a text file).")
        yield Path(tmp)
    finally:
        os.unlink(tmp)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("lm_dirs", nargs="+")
    p.add_argument("--valid", default="../shared/data/lm/wiki_en.valid.tok.txt.gz")
    p.add_argument("--tokens", type=int, default=20000)
    p.add_argument("--output", default=None, help="write the figures to this JSON file")
    args = p.parse_args()
    if not Path(args.valid).is_file():
        raise SystemExit(f"Validation text not found: {args.valid}. Fix: pass --valid PATH (see ../shared/data/lm/SOURCE.md).")
    torch.set_num_threads(1)
    with plain_text(Path(args.valid)) as valid:
        results = [validate(lm_dir, valid, args.tokens) for lm_dir in args.lm_dirs]
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


def validate(lm_dir: str, valid: Path, tokens: int) -> dict:
    """Validation figures of one exported LM on the first ``tokens`` targets of ``valid``; prints them."""
    from spacy_ldnet.lm.checkpoint import load_lm
    from spacy_ldnet.lm.data import Vocab
    from spacy_ldnet.lm.pretrain import PretrainConfig, evaluate

    model, vocab_list, extra = load_lm(lm_dir)
    cfg = PretrainConfig(
        train=[str(valid)], valid=str(valid), output="unused",
        direction=extra.get("direction", model.config.direction),
        output_layer=model.config.output, lowercase=bool(extra.get("lowercase", True)),
        valid_tokens=tokens, nn_eval_tokens=tokens, progress=False,
    )
    res = evaluate(model, cfg, Vocab(vocab_list, lowercase=cfg.lowercase), torch.device("cpu"))
    training = extra.get("training", {})
    row = {"lm": str(lm_dir), "direction": cfg.direction, "steps": training.get("steps"),
           "tokens_seen": training.get("tokens_seen"), **res}
    figs = f"loss {res['valid_loss']:.4f}"
    if "nn_top1" in res:
        figs += f" | nn@1 {100 * res['nn_top1']:.1f}% nn@10 {100 * res['nn_top10']:.1f}% ({res['nn_tokens']} targets)"
    if "valid_ppl" in res:
        figs += f" | ppl {res['valid_ppl']:.1f}"
    print(f"{lm_dir}: {cfg.direction}, {row['steps']} steps, {row['tokens_seen']} tokens | {figs}")
    return row


if __name__ == "__main__":
    sys.exit(main())
