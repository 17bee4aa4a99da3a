"""Teacher-labelled sentences for training the pruned tagger (sequence-level
knowledge distillation on unlabelled text).

After the deletion, :func:`spacy_ldnet.prune.select.run_fine_tuning` trains the
pruned tagger further. With ``spacy-ldnet prune --pseudo-text FILE
--pseudo-sentences N`` it trains on the gold training set plus N sentences of
raw text tagged by the *unpruned* pipeline: the student sees the teacher's
Viterbi tag paths on text it was never trained on (sequence-level knowledge
distillation, Kim & Rush 2016, "Sequence-Level Knowledge Distillation",
EMNLP, section 3.2: train on the teacher's mode instead of the data). For
CoNLL-2003 the natural text is Reuters newswire
(``../shared/data/lm/reuters21578.tok.txt.gz``, the agency and tokenization of
CoNLL-2003).

:func:`read_sentences` draws the sentences, :func:`teacher_labelled_examples`
tags them.
"""
import gzip
import random
from pathlib import Path
from typing import List, Sequence

from spacy.language import Language
from spacy.tokens import Doc
from spacy.training import Example


class PseudoTextError(ValueError):
    """The raw-text file is missing, unreadable or too short."""


def read_sentences(path: Path, n: int, *, seed: int = 0, min_tokens: int = 3, max_tokens: int = 60) -> List[List[str]]:
    """``n`` sentences drawn uniformly (reservoir sampling, ``random.Random(seed)``) from a tokenized text file.

    path: UTF-8 text, one sentence per line, tokens separated by spaces;
        ``.gz`` files are read with gzip (the format of ``../shared/data/lm``).
        Empty lines (document breaks) are skipped, and so are lines with fewer
        than ``min_tokens`` or more than ``max_tokens`` tokens.
    n: number of sentences (>= 1).

    Returns: the sentences (lists of tokens) in file order; memory O(n).

    Raises:
        PseudoTextError: the file is missing or not UTF-8 text (gzip or plain),
            or it holds fewer than ``n`` usable sentences; the message names
            the file and the fix.
    """
    path = Path(path)
    if n < 1:
        raise PseudoTextError(f"The number of pseudo-labelled sentences must be >= 1, got {n}.")
    if not path.is_file():
        raise PseudoTextError(
            f"Raw text for pseudo-labelling not found: {path}. Fix: pass a tokenized text file (one sentence per "
            f"line, e.g. ../shared/data/lm/reuters21578.tok.txt.gz) or leave --pseudo-sentences at 0."
        )
    rng = random.Random(seed)
    reservoir: List[tuple] = []  # (line number, tokens)
    seen = 0
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf8") as f:
            for number, line in enumerate(f):
                tokens = line.split()
                if not min_tokens <= len(tokens) <= max_tokens:
                    continue
                seen += 1
                if len(reservoir) < n:
                    reservoir.append((number, tokens))
                else:
                    j = rng.randrange(seen)
                    if j < n:
                        reservoir[j] = (number, tokens)
    except (OSError, UnicodeDecodeError, EOFError) as e:
        raise PseudoTextError(
            f"Could not read {path} as UTF-8 text{' (gzip)' if opener is gzip.open else ''}: {e}. Fix: pass a "
            f"tokenized text file, one sentence per line (gzip-compressed files must end in .gz)."
        ) from e
    if seen < n:
        raise PseudoTextError(
            f"{path} holds {seen} sentences of {min_tokens}-{max_tokens} tokens, fewer than the {n} asked for. "
            f"Fix: pass a larger file or a smaller --pseudo-sentences."
        )
    return [tokens for _, tokens in sorted(reservoir)]


def teacher_labelled_examples(nlp: Language, sentences: Sequence[Sequence[str]], *, batch_size: int = 128) -> List[Example]:
    """Examples whose reference is ``nlp``'s annotation of each sentence.

    nlp: the teacher (the unpruned pipeline); run once over the sentences,
        in inference mode.
    sentences: token lists (one sentence each, as :func:`read_sentences`).

    Returns: one :class:`spacy.training.Example` per sentence; its
    ``predicted`` doc holds the words only, its ``reference`` the teacher's
    entities (``doc.ents``, every other token O) or spans (``doc.spans[key]``),
    so training code reads the teacher's tags as gold.
    """
    words = [list(s) for s in sentences]
    tagged = nlp.pipe((Doc(nlp.vocab, words=w) for w in words), batch_size=batch_size)
    return [Example(Doc(nlp.vocab, words=w), ref) for w, ref in zip(words, tagged)]
