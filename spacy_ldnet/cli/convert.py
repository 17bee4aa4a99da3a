"""``spacy-ldnet convert-conll``: CoNLL-2003/2000 column files -> ``.spacy``.

Entities (the default): a thin layer over spaCy's own ``spacy convert -c ner``:
it only normalises the document separators first (CoNLL-2003's test file
writes ``-DOCSTART- -X- -X- O``, which spaCy's converter does not recognise as
a separator and would read as a token) and gives each output the stem you
choose.

Spans (``--spans-key KEY``, e.g. CoNLL-2000 chunking): the last column's
IOB1/IOB2 chunks go to ``doc.spans[KEY]`` instead of ``doc.ents``, one sentence
per doc.

Hold-out (``--holdout-every N``, for CoNLL-2000, which has no dev split): every
N-th sentence of the input (the 1-based sentence numbers N, 2N, 3N, ...) goes
to ``HOLDOUT_NAME.spacy`` (default ``dev.spacy``) and the others to
``NAME.spacy``. Deterministic, and spread over the whole file.
"""
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

import typer

from . import app

DOCSTART = "-DOCSTART- -X- O O"


def normalise_docstart(text: str) -> str:
    """Rewrite every line whose first field is ``-DOCSTART-`` to ``-DOCSTART- -X- O O``."""
    lines = text.split("\n")
    return "\n".join(DOCSTART if line.split(" ", 1)[0] == "-DOCSTART-" else line for line in lines)


def split_sentences(text: str) -> List[str]:
    """The blank-line separated blocks of a CoNLL file (each without trailing newline)."""
    blocks, current = [], []
    for line in text.split("\n"):
        if line.strip():
            current.append(line.rstrip("\r"))
        elif current:
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return blocks


def holdout_split(sentences: List[str], every: int) -> Tuple[List[str], List[str]]:
    """``(kept, held_out)``: sentences whose 1-based number is a multiple of ``every`` are held out."""
    if every < 2:
        raise ValueError(f"--holdout-every must be at least 2 (or 0 for no hold-out), got {every}.")
    kept = [s for i, s in enumerate(sentences, 1) if i % every]
    held = [s for i, s in enumerate(sentences, 1) if not i % every]
    return kept, held


def iob_chunks(tags: List[str], where: str = "") -> List[Tuple[int, int, str]]:
    """Token spans ``(start, end, label)`` of IOB1 or IOB2 tags (``O``, ``B-X``, ``I-X``).

    ``B-X`` always starts a chunk; ``I-X`` continues an open ``X`` chunk and
    otherwise starts one (IOB1, and what conlleval does with a stray ``I-X``).

    Raises:
        ValueError: a tag is not ``O``, ``B-X`` or ``I-X`` (the message names ``where``).
    """
    chunks: List[Tuple[int, int, str]] = []
    start, label = None, None
    for i, tag in enumerate(tags + ["O"]):
        prefix, _, lab = tag.partition("-")
        if tag != "O" and (prefix not in ("B", "I") or not lab):
            raise ValueError(f"Not an IOB tag: {tag!r}{where}. Expected 'O', 'B-<label>' or 'I-<label>'.")
        if label is not None and (tag == "O" or prefix == "B" or lab != label):
            chunks.append((start, i, label))
            start, label = None, None
        if tag != "O" and label is None:
            start, label = i, lab
    return chunks


def sentences_to_span_docs(sentences: List[str], vocab, spans_key: str, source: str = ""):
    """One Doc per sentence (no sentence boundaries set), chunks in ``doc.spans[spans_key]``.

    Every doc gets the group, empty or not, so a sentence without chunks is
    scored (and trained on) as annotated.
    """
    from spacy.tokens import Doc, Span

    docs = []
    for n, block in enumerate(sentences, 1):
        rows = [line.split() for line in block.split("\n")]
        for row in rows:
            if len(row) < 2:
                raise ValueError(
                    f"{source}: sentence {n} has a line with fewer than 2 columns ({' '.join(row)!r}). "
                    f"Expected 'token ... tag' columns (CoNLL-2000: token POS chunk)."
                )
        if rows[0][0] == "-DOCSTART-":
            continue
        doc = Doc(vocab, words=[row[0] for row in rows])
        chunks = iob_chunks([row[-1] for row in rows], where=f" in {source}, sentence {n}")
        doc.spans[spans_key] = [Span(doc, s, e, label=label) for s, e, label in chunks]
        docs.append(doc)
    return docs


def _convert_ents(text: str, out: Path, n_sents: int, lang: str) -> None:
    from spacy.cli.convert import convert

    with tempfile.TemporaryDirectory() as tmp:
        tmp_in = Path(tmp) / f"{out.stem}.iob"
        tmp_in.write_text(text, encoding="utf8")
        convert(
            tmp_in, out.parent, file_type="spacy", n_sents=n_sents, seg_sents=False, model=None,
            morphology=False, merge_subtokens=False, converter="ner", ner_map=None, lang=lang,
            concatenate=False, silent=True,
        )


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
) -> Path:
    """Convert one CoNLL NER/chunk file (last column = IOB1 or IOB2 tag) to ``output_dir/NAME.spacy``.

    Entities (``spans_key`` None): documents are split at ``-DOCSTART-`` lines
    when there are any, else every ``n_sents`` sentences (default 10).

    Spans (``spans_key`` set): one sentence per doc, the chunks in
    ``doc.spans[spans_key]``, ``doc.ents`` unset. One sentence per doc because
    ``spacy train``'s gold_preproc splits a multi-sentence doc with
    ``Span.as_doc``, which drops ``doc.spans``.

    ``holdout_every`` = N > 0: sentences number N, 2N, 3N, ... (1-based) go to
    ``output_dir/HOLDOUT_NAME.spacy`` instead (files without ``-DOCSTART-``
    only). Returns the path of ``NAME.spacy``.

    Raises:
        FileNotFoundError: the input file is missing (the message names it).
        ValueError: bad options or tags; a hold-out from a file with ``-DOCSTART-`` lines.
    """
    import spacy
    from spacy.tokens import DocBin

    input_path = Path(input_path)
    if not input_path.is_file():
        raise FileNotFoundError(
            f"CoNLL file not found: {input_path}. Fix: pass the path of a CoNLL column file "
            f"(for the project, set the 'data_dir' var: spacy project run all . --vars.data_dir /path)."
        )
    if spans_key is not None and not spans_key:
        raise ValueError("--spans-key must be a non-empty name, e.g. chunks.")
    if spans_key is not None and n_sents not in (None, 1):
        raise ValueError(
            f"--n-sents {n_sents} cannot be used with --spans-key: span docs hold one sentence each "
            f"(spaCy's gold_preproc sentence split drops doc.spans)."
        )
    if holdout_every and holdout_every < 2:
        raise ValueError(f"--holdout-every must be at least 2 (or 0 for no hold-out), got {holdout_every}.")
    stem = name or input_path.stem
    if holdout_every and holdout_name == stem:
        raise ValueError(f"The hold-out name {holdout_name!r} equals the output name; choose another --holdout-name.")
    text = normalise_docstart(input_path.read_text(encoding="utf8"))
    parts = [(stem, text)]
    if holdout_every:
        sentences = split_sentences(text)
        if any(s.split(" ", 1)[0] == "-DOCSTART-" for s in sentences):
            raise ValueError(
                f"{input_path} has -DOCSTART- lines; --holdout-every splits sentences and would cut its "
                f"documents. Fix: hold out whole documents yourself, or use a file without -DOCSTART-."
            )
        kept, held = holdout_split(sentences, holdout_every)
        if not kept or not held:
            raise ValueError(
                f"{input_path} has {len(sentences)} sentences: too few to hold out every {holdout_every}th."
            )
        parts = [(stem, "\n\n".join(kept) + "\n"), (holdout_name, "\n\n".join(held) + "\n")]
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    for part_stem, part_text in parts:
        out = output_dir / f"{part_stem}.spacy"
        if spans_key is None:
            _convert_ents(part_text, out, n_sents or 10, lang)
        else:
            docs = sentences_to_span_docs(split_sentences(part_text), spacy.blank(lang).vocab, spans_key, str(input_path))
            DocBin(docs=docs, store_user_data=False).to_disk(out)
        if not out.exists():
            raise RuntimeError(f"spaCy's converter wrote no {out}; check that {input_path} is a CoNLL column file.")
    return output_dir / f"{stem}.spacy"


@app.command("convert-conll")
def convert_conll_cli(
    input_path: Path = typer.Argument(..., help="CoNLL column file (token ... tag), IOB1 or IOB2"),
    output_dir: Path = typer.Argument(..., help="Folder for the .spacy file"),
    name: str = typer.Option("", "--name", "-n", help="Output file stem (default: input stem)"),
    n_sents: Optional[int] = typer.Option(
        None, "--n-sents", help="Sentences per doc when the file has no -DOCSTART- lines (default 10; "
        "with --spans-key always 1)"
    ),
    lang: str = typer.Option("en", "--lang"),
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
) -> None:
    """Convert a CoNLL NER or chunking file to spaCy's binary format."""
    try:
        out = convert_conll(
            input_path, output_dir, name=name, n_sents=n_sents, lang=lang, spans_key=spans_key,
            holdout_every=holdout_every, holdout_name=holdout_name,
        )
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(1)
    from spacy.tokens import DocBin
    import spacy

    paths = [out] + ([out.parent / f"{holdout_name}.spacy"] if holdout_every else [])
    for path in paths:
        docs = list(DocBin().from_disk(path).get_docs(spacy.blank(lang).vocab))
        n_tok = sum(len(d) for d in docs)
        if spans_key is None:
            n_ents = sum(len(d.ents) for d in docs)
            typer.echo(f"Wrote {path}: {len(docs)} docs, {n_tok} tokens, {n_ents} entities/chunks")
        else:
            n_spans = sum(len(d.spans.get(spans_key, [])) for d in docs)
            typer.echo(f"Wrote {path}: {len(docs)} docs, {n_tok} tokens, {n_spans} spans in doc.spans[{spans_key!r}]")
