"""Prediction time of a pipeline's character BiLSTM: the packed native kernel
against length-sorted padded groups of several sizes on oneDNN.

Usage::

    python benchmarks/char_bilstm_groups.py [PIPELINE] [--data corpus/conll03/test.spacy] \\
        [--sizes 0,8,16,32] [--batches 8] [--rounds 5]

Featurizes the first ``--batches`` batches of 128 texts of DATA (the raw
document texts, cut into windows as ``nlp.pipe`` would, and one sentence per
Doc), then times ``CharBiLSTM.forward`` on them for each group size (0: the
packed kernel), interleaved, one torch thread; prints the median seconds per
batch of each size and the largest difference from the packed kernel's output.
"""
import argparse
import statistics
import time

import spacy
import torch
from spacy.tokens import DocBin

from spacy_ldnet.embed.featurize import featurize
from spacy_ldnet.ner.model import cut
from spacy_ldnet.thinc_utils import torch_module


def batches(nlp, data, regime, n_batches, size=128):
    docs = list(DocBin().from_disk(data).get_docs(nlp.vocab))
    texts = [s.text for d in docs for s in d.sents] if regime == "sentences" else [d.text for d in docs]
    out = []
    for k in range(0, min(len(texts), n_batches * size), size):
        out.append([nlp.make_doc(t) for t in texts[k : k + size]])
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("pipeline", nargs="?", default="en_ldnet_conll03")
    p.add_argument("--data", default="corpus/conll03/test.spacy")
    p.add_argument("--sizes", default="0,8,16,32")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()
    torch.set_num_threads(1)
    nlp = spacy.load(args.pipeline)
    ner = nlp.get_pipe("ldnet_ner")
    tok2vec = ner.model.get_ref("tok2vec")
    module = torch_module(tok2vec.layers[0])
    chars = getattr(module, "char_word", module).chars.eval()
    sizes = [int(x) for x in args.sizes.split(",")]
    for regime in ("docs", "sentences"):
        inputs = []
        for docs in batches(nlp, args.data, regime, args.batches):
            f = featurize(cut(ner.model, docs), n_word_rows=tok2vec.attrs["n_word_rows"], word_dim=tok2vec.attrs["word_width"],
                          n_chars=tok2vec.attrs["n_chars"], row_scales=tok2vec.attrs.get("word_row_scales"))
            inputs.append([torch.from_numpy(x) for x in (f.char_ids, f.char_lengths, f.fw_index, f.bw_index)])
        times = {size: [] for size in sizes}
        diff = {size: 0.0 for size in sizes}
        with torch.no_grad():
            chars.bucket_size = 0
            reference = [chars(*x) for x in inputs]
            for _ in range(args.rounds):
                for size in sizes:
                    chars.bucket_size = size
                    t0 = time.perf_counter()
                    outs = [chars(*x) for x in inputs]
                    times[size].append((time.perf_counter() - t0) / len(inputs))
                    for o, r, x in zip(outs, reference, inputs):
                        real = x[2] > 0  # (S, T) words that have a space after them
                        diff[size] = max(diff[size], float((o - r)[real].abs().max()) if real.any() else 0.0)
        print(f"{regime}: seconds per batch of 128 texts (median of {args.rounds})")
        for size in sizes:
            label = "packed native" if size == 0 else f"groups of {size}, oneDNN"
            print(f"  {label:>22}: {statistics.median(times[size]):.4f} s  max |diff| {diff[size]:.1e}")


if __name__ == "__main__":
    main()
