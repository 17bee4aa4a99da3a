"""``spacy-ldnet convert-conll``: CoNLL-2003/2000 column files -> ``.spacy``.

A thin layer over spaCy's own ``spacy convert -c ner``: it only normalises the
document separators first (CoNLL-2003's test file writes ``-DOCSTART- -X- -X- O``,
which spaCy's converter does not recognise as a separator and would read as a
token) and gives each output the stem you choose.
"""
import tempfile
from pathlib import Path

import typer

from . import app

DOCSTART = "-DOCSTART- -X- O O"


def normalise_docstart(text: str) -> str:
    """Rewrite every line whose first field is ``-DOCSTART-`` to ``-DOCSTART- -X- O O``."""
    lines = text.split("\n")
    return "\n".join(DOCSTART if line.split(" ", 1)[0] == "-DOCSTART-" else line for line in lines)


def convert_conll(input_path: Path, output_dir: Path, *, name: str = "", n_sents: int = 10, lang: str = "en") -> Path:
    """Convert one CoNLL NER/chunk file (last column = IOB1 or IOB2 tag) to ``output_dir/NAME.spacy``.

    Documents are split at ``-DOCSTART-`` lines when there are any, else every
    ``n_sents`` sentences. Returns the written path.

    Raises:
        FileNotFoundError: the input file is missing (the message names it).
    """
    from spacy.cli.convert import convert

    input_path = Path(input_path)
    if not input_path.is_file():
        raise FileNotFoundError(
            f"CoNLL file not found: {input_path}. Fix: pass the path of a CoNLL column file "
            f"(for the project, set the 'data_dir' var: spacy project run all . --vars.data_dir /path)."
        )
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    stem = name or input_path.stem
    text = normalise_docstart(input_path.read_text(encoding="utf8"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp_in = Path(tmp) / f"{stem}.iob"
        tmp_in.write_text(text, encoding="utf8")
        convert(
            tmp_in, output_dir, file_type="spacy", n_sents=n_sents, seg_sents=False, model=None,
            morphology=False, merge_subtokens=False, converter="ner", ner_map=None, lang=lang,
            concatenate=False, silent=True,
        )
    out = output_dir / f"{stem}.spacy"
    if not out.exists():
        raise RuntimeError(f"spaCy's converter wrote no {out}; check that {input_path} is a CoNLL column file.")
    return out


@app.command("convert-conll")
def convert_conll_cli(
    input_path: Path = typer.Argument(..., help="CoNLL column file (token ... tag), IOB1 or IOB2"),
    output_dir: Path = typer.Argument(..., help="Folder for the .spacy file"),
    name: str = typer.Option("", "--name", "-n", help="Output file stem (default: input stem)"),
    n_sents: int = typer.Option(10, "--n-sents", help="Sentences per doc when the file has no -DOCSTART- lines"),
    lang: str = typer.Option("en", "--lang"),
) -> None:
    """Convert a CoNLL NER or chunking file to spaCy's binary format."""
    try:
        out = convert_conll(input_path, output_dir, name=name, n_sents=n_sents, lang=lang)
    except FileNotFoundError as e:
        typer.echo(f"Error: {e}", err=True)
        raise typer.Exit(1)
    from spacy.tokens import DocBin
    import spacy

    db = DocBin().from_disk(out)
    docs = list(db.get_docs(spacy.blank(lang).vocab))
    n_ents = sum(len(d.ents) for d in docs)
    n_tok = sum(len(d) for d in docs)
    typer.echo(f"Wrote {out}: {len(docs)} docs, {n_tok} tokens, {n_ents} entities/chunks")
