"""`spacy train` of the no-LM NER config with the CPU LSTM backward on the
padded path (the default, ``padded``) or forced onto torch's packed kernel
(``packed``), for timing the two from outside.

Usage (run from the repository root; 300 steps on the first 1,000 CoNLL-2003
training sentences, dev = the first 250, as ``benchmarks/learning_curve.py``
writes them)::

    for round in 1 2 3; do for path in padded packed; do
        OMP_NUM_THREADS=1 taskset -c 0 /usr/bin/time -f "$path %e s" \\
            python benchmarks/train_lstm_path.py $path /tmp/train_$path
    done; done

(whole-process wall time, the two paths interleaved; the ratio is taken pair
by pair).
"""
import sys

import spacy_ldnet.lm.encoder as encoder
import spacy_ldnet.torch_utils as torch_utils


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("padded", "packed"):
        raise SystemExit("usage: python benchmarks/train_lstm_path.py padded|packed OUTPUT_DIR")
    if sys.argv[1] == "packed":
        torch_utils.backward_on_cpu = encoder.backward_on_cpu = lambda *args: False
    sys.argv = ["spacy", "train", "configs/conll03_ner.cfg", "--output", sys.argv[2],
                "--paths.train", "corpus/curve/ner/train_1000.spacy", "--paths.dev", "corpus/curve/ner/train_250.spacy",
                "--training.max_steps", "300", "--training.eval_frequency", "1000", "--system.seed", "0"]
    from spacy.cli import setup_cli

    setup_cli()


if __name__ == "__main__":
    main()
