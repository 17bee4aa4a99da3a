"""``spacy-ldnet convert-conll``: CoNLL-2003/2000 column files -> ``.spacy``.

The input is read and validated whole by :func:`spacy_ldnet.conll.read_conll`
(column layout, tag scheme IOB1/IOB2/IOBES/BILUO, ``file:line`` errors) before
anything is written; each ``.spacy`` file is written to a temporary file in
the output folder and renamed, so a failed run leaves no partial output.

Entities (the default): the chunks go to ``doc.ents``. Documents are split at
``-DOCSTART-`` lines (either CoNLL-2003 variant, any column count); a file
without them is grouped into docs of ``--n-sents`` sentences (default 10).
Tokens get sentence starts, and, in files with three or more columns, the
part-of-speech column (column 2) as ``token.tag_``.

Spans (``--spans-key KEY``, e.g. CoNLL-2000 chunking): the chunks go to
``doc.spans[KEY]`` instead of ``doc.ents``, one sentence per doc, because
``spacy train``'s gold_preproc splits a multi-sentence doc with
``Span.as_doc``, which drops ``doc.spans``.

Hold-out (``--holdout-every N``, for CoNLL-2000, which has no dev split): every
N-th sentence of the input (the 1-based sentence numbers N, 2N, 3N, ...) goes
to ``HOLDOUT_NAME.spacy`` (default ``dev.spacy``) and the others to
``NAME.spacy``. Deterministic, and spread over the whole file.
"""
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple, TypeVar

import typer

from ..conll import ConllFile, ConllSentence, normalise_scheme, read_conll
from . import app

DEFAULT_N_SENTS = 10
T = TypeVar("T")


@dataclass
class WrittenFile:
    """One ``.spacy`` file written: its path and what it holds (``chunks``: entities or spans)."""

    path: Path
    docs: int
    sentences: int
    tokens: int
    chunks: int


@dataclass
class Conversion:
    """The result of :func:`convert_conll`: the file read, the files written, how docs were split."""

    conll: ConllFile
    outputs: List[WrittenFile]
    doc_split: str

    @property
    def path(self) -> Path:
        """The path of ``NAME.spacy``."""
        return self.outputs[0].path


def holdout_split(sentences: Sequence[T], every: int) -> Tuple[List[T], List[T]]:
    """``(kept, held_out)``: sentences whose 1-based number is a multiple of ``every`` are held out.

    Raises:
        ValueError: ``every < 2``.
    """
    if every < 2:
        raise ValueError(f"--holdout-every must be at least 2 (or 0 for no hold-out), got {every}.")
    kept = [s for i, s in enumerate(sentences, 1) if i % every]
    held = [s for i, s in enumerate(sentences, 1) if not i % every]
    return kept, held


def sentences_to_doc(vocab, sentences: Sequence[ConllSentence], spans_key: Optional[str] = None):
    """One ``Doc`` of ``sentences``: chunks in ``doc.ents``, or in ``doc.spans[spans_key]`` when given.

    Entity docs get sentence starts; span docs none (they hold one sentence).
    Every span doc gets the group, empty or not, so a sentence without chunks
    is scored and trained on as annotated. Part-of-speech tags go to ``tag_``
    when the sentences have them.
    """
    from spacy.tokens import Doc, Span

    words = [w for s in sentences for w in s.words]
    tags = [t for s in sentences for t in s.pos] if all(s.pos is not None for s in sentences) else None
    starts = None if spans_key is not None else [i == 0 for s in sentences for i in range(len(s.words))]
    doc = Doc(vocab, words=words, tags=tags, sent_starts=starts)
    spans, offset = [], 0
    for s in sentences:
        spans.extend(Span(doc, offset + a, offset + b, label=label) for a, b, label in s.chunks)
        offset += len(s.words)
    if spans_key is None:
        doc.ents = spans
    else:
        doc.spans[spans_key] = spans
    return doc


def _check_options(name: str, n_sents, spans_key, holdout_every: int, holdout_name: str, scheme: str) -> None:
    normalise_scheme(scheme)
    for option, stem in (("--name", name or "x"), ("--holdout-name", holdout_name)):
        if not stem or stem in (".", "..") or "/" in stem or os.sep in stem:
            raise ValueError(f"{option} {stem!r} must be a file stem, not a path. Fix: e.g. {option} train.")
    if n_sents is not None and n_sents < 1:
        raise ValueError(f"--n-sents must be at least 1, got {n_sents}. Fix: leave it out for {DEFAULT_N_SENTS}.")
    if spans_key is not None and not spans_key:
        raise ValueError("--spans-key must be a non-empty name, e.g. chunks.")
    if spans_key is not None and n_sents not in (None, 1):
        raise ValueError(
            f"--n-sents {n_sents} cannot be used with --spans-key: span docs hold one sentence each "
            f"(spaCy's gold_preproc sentence split drops doc.spans)."
        )
    if holdout_every and holdout_every < 2:
        raise ValueError(f"--holdout-every must be at least 2 (or 0 for no hold-out), got {holdout_every}.")


def _check_output_dir(output_dir: Path, stems: Sequence[str]) -> None:
    """Raise ValueError when ``output_dir`` (or a folder above it) is a file, or an output is a folder."""
    existing = output_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ValueError(
            f"Output path {existing} exists and is a file, not a folder. Fix: pass a folder for the .spacy files."
        )
    for stem in stems:
        out = output_dir / f"{stem}.spacy"
        if out.is_dir():
            raise ValueError(f"Output {out} exists and is a folder. Fix: remove it, or choose another --name.")


def _parts(conll: ConllFile, stem: str, n_sents: int, spans_key, holdout_every: int, holdout_name: str):
    """``([(stem, [doc sentences, ...]), ...], how docs were split)``."""
    def group(sentences, size):
        return [sentences[i:i + size] for i in range(0, len(sentences), size)]

    if spans_key is not None:
        how = "one sentence per doc (--spans-key)"
    elif conll.has_docstart and not holdout_every:
        how = "docs split at the file's -DOCSTART- lines"
    else:
        how = f"docs of {n_sents} sentences (--n-sents; the file has no -DOCSTART- lines)"
    size = 1 if spans_key is not None else n_sents
    if not holdout_every:
        docs = conll.documents if conll.has_docstart and spans_key is None else group(conll.sentences, size)
        return [(stem, docs)], how
    sentences = conll.sentences
    if conll.has_docstart:
        raise ValueError(
            f"{conll.path} has -DOCSTART- lines; --holdout-every splits sentences and would cut its "
            f"documents. Fix: hold out whole documents yourself, or use a file without -DOCSTART-."
        )
    kept, held = holdout_split(sentences, holdout_every)
    if not kept or not held:
        raise ValueError(f"{conll.path} has {len(sentences)} sentences: too few to hold out every {holdout_every}th.")
    return [(stem, group(kept, size)), (holdout_name, group(held, size))], how


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file next to ``path``, then rename it to ``path``."""
    tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
    try:
        with open(tmp, "xb") as f:  # "x": a new file, with the usual permissions
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def convert_conll(
    input_path: Path,
    output_dir: Path,
    *,
    name: str = "",
    n_sents: Optional[int] = None,
    lang: str = "en",
    spans_key: Optional[str] = None,
    holdout_every: int = 0,
    holdout_name: str = "dev",
    scheme: str = "auto",
    tag_column: Optional[int] = None,
) -> Conversion:
    """Convert one CoNLL NER/chunk file to ``output_dir/NAME.spacy`` (see the module docstring).

    ``n_sents``: sentences per doc for entity files without ``-DOCSTART-``
    lines (default 10). ``scheme``: ``auto``, IOB1, IOB2, IOBES (BIOES) or
    BILUO; ``tag_column``: 1-based column of the tags (default the last); see
    :func:`spacy_ldnet.conll.read_conll`. ``holdout_every`` = N > 0: sentences
    number N, 2N, 3N, ... (1-based) go to ``output_dir/HOLDOUT_NAME.spacy``
    instead (files without ``-DOCSTART-`` only). Nothing is written unless the
    whole input and all options are valid.

    Raises:
        FileNotFoundError: the input file is missing (the message names it).
        ValueError: bad options, an output path that is a file, a hold-out from a
            file with ``-DOCSTART-`` lines; ``ConllError`` (a ValueError) for bad
            input, with ``file:line``.
        OSError: the output could not be written.
    """
    input_path, output_dir = Path(input_path), Path(output_dir)
    _check_options(name, n_sents, spans_key, holdout_every, holdout_name, scheme)
    stem = name or input_path.stem
    if holdout_every and holdout_name == stem:
        raise ValueError(f"The hold-out name {holdout_name!r} equals the output name; choose another --holdout-name.")
    _check_output_dir(output_dir, [stem] + ([holdout_name] if holdout_every else []))
    conll = read_conll(input_path, tag_column=tag_column, scheme=scheme)
    parts, how = _parts(conll, stem, n_sents or DEFAULT_N_SENTS, spans_key, holdout_every, holdout_name)
    import spacy  # after the checks: they need no spaCy, and fail fast
    from spacy.tokens import DocBin

    try:
        vocab = spacy.blank(lang).vocab
    except ImportError:
        raise ValueError(f"--lang {lang!r} is not a spaCy language code. Fix: e.g. --lang en.") from None
    if n_sents and conll.has_docstart and spans_key is None:
        how += f"; --n-sents {n_sents} not used"
    blobs, outputs = [], []
    for part_stem, doc_sentences in parts:
        docs = [sentences_to_doc(vocab, sents, spans_key) for sents in doc_sentences]
        blobs.append(DocBin(docs=docs, store_user_data=False).to_bytes())
        outputs.append(WrittenFile(
            output_dir / f"{part_stem}.spacy", len(docs), sum(len(s) for s in doc_sentences),
            sum(len(d) for d in docs), sum(len(s.chunks) for sents in doc_sentences for s in sents),
        ))
    output_dir.mkdir(parents=True, exist_ok=True)
    for out, blob in zip(outputs, blobs):
        _write_atomic(out.path, blob)
    return Conversion(conll, outputs, how)


def _report(result: Conversion, spans_key: Optional[str]) -> None:
    conll = result.conll
    how = "detected" if conll.scheme_detected else "--scheme"
    typer.echo(
        f"Read {conll.path}: {len(conll.sentences)} sentences, {conll.n_columns} columns, "
        f"tags in column {conll.tag_column}, scheme {conll.scheme} ({how}); {result.doc_split}"
    )
    if conll.repairs:
        rule = "a B-X not after an X tag" if conll.scheme == "IOB1" else "an I-X that continues no X chunk"
        typer.echo(
            f"Repaired {conll.repairs} ill-formed {conll.scheme} tags ({rule} starts a chunk, as conlleval "
            f"reads it); first: {conll.first_repair}"
        )
    what = "entities" if spans_key is None else f"spans in doc.spans[{spans_key!r}]"
    for out in result.outputs:
        typer.echo(
            f"Wrote {out.path}: {out.docs} docs, {out.sentences} sentences, {out.tokens} tokens, {out.chunks} {what}"
        )


@app.command("convert-conll")
def convert_conll_cli(
    input_path: Path = typer.Argument(
        ..., help="CoNLL column file (token ... tag, UTF-8): CoNLL-2003 (4 columns), CoNLL-2000 (3) or token/tag (2)"
    ),
    output_dir: Path = typer.Argument(..., help="Folder for the .spacy file"),
    name: str = typer.Option("", "--name", "-n", help="Output file stem (default: input stem)"),
    n_sents: Optional[int] = typer.Option(
        None, "--n-sents", help=f"Sentences per doc for a file without -DOCSTART- lines (default "
        f"{DEFAULT_N_SENTS}; with --spans-key always 1); a file with them is split into docs there"
    ),
    lang: str = typer.Option("en", "--lang", help="spaCy language code of the vocab"),
    spans_key: Optional[str] = typer.Option(
        None, "--spans-key", help="Write the chunks to doc.spans[KEY] (one sentence per doc) instead of "
        "doc.ents, e.g. 'chunks' for CoNLL-2000"
    ),
    holdout_every: int = typer.Option(
        0, "--holdout-every", help="Hold out every N-th sentence (1-based numbers N, 2N, ...) into "
        "HOLDOUT_NAME.spacy, e.g. a dev split from CoNLL-2000 train (the project uses 9: 992 of 8,936 "
        "sentences); 0 = none"
    ),
    holdout_name: str = typer.Option("dev", "--holdout-name", help="Output file stem of the hold-out"),
    scheme: str = typer.Option(
        "auto", "--scheme", help="Tag scheme: auto (recognised from the tags), IOB1, IOB2, IOBES (BIOES) or "
        "BILUO. Ill-formed IOB1/IOB2 tags are repaired as conlleval reads them and counted; ill-formed "
        "IOBES/BILUO tags are errors"
    ),
    tag_column: Optional[int] = typer.Option(
        None, "--tag-column", help="1-based column of the tags (default: the last), e.g. 3 for CoNLL-2003's chunks"
    ),
) -> None:
    """Convert a CoNLL NER or chunking file to spaCy's binary format, after validating all of it."""
    try:
        result = convert_conll(
            input_path, output_dir, name=name, n_sents=n_sents, lang=lang, spans_key=spans_key,
            holdout_every=holdout_every, holdout_name=holdout_name, scheme=scheme, tag_column=tag_column,
        )
    except (OSError, ValueError) as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(1)
    _report(result, spans_key)
