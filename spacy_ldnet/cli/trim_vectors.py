"""``spacy-ldnet trim-vectors PIPELINE OUTPUT``: write a trained pipeline with a
small word-vector table (see :mod:`spacy_ldnet.embed.trim`): the fine-tuned
rows move into ``nlp.vocab.vectors``, which keeps its first ``--rows`` rows.
Arguments are checked before spaCy and torch are imported; every error is one
line on stderr and exit status 1.
"""
from pathlib import Path

import typer

from . import app
from .prune import check_input, check_output, fail, write_pipeline


@app.command("trim-vectors")
def trim_vectors_command(
    pipeline: Path = typer.Argument(..., help="A trained pipeline whose ldnet_ner embedder has a word table (e.g. training/conll03_ldnet/model-best)."),
    output: Path = typer.Argument(..., help="Where to write the trimmed pipeline (a new directory)."),
    rows: int = typer.Option(50000, "--rows", help="Rows of the vectors table to keep, most frequent first; other words read <unk>."),
    dtype: str = typer.Option("float32", "--dtype", help="How the kept rows are stored: float32 (exact), float16, or int8 (one scale per row, a quarter of the bytes)."),
) -> None:
    """Keep the first --rows rows of the word vectors (fine-tuned values included); report the size before and after."""
    check_input(pipeline, "PIPELINE", pipeline=True)
    if rows < 1:
        fail(f"--rows {rows}: must be at least 1. Fix: e.g. --rows 50000.")
    if dtype not in ("float32", "float16", "int8"):
        fail(f"--dtype {dtype}: not one of float32, float16, int8.")
    check_output(output, pipeline, ("OUTPUT", "PIPELINE"), "trimmed")
    _trim(pipeline, output, rows, dtype)


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def _trim(pipeline: Path, output: Path, rows: int, dtype: str) -> None:
    import spacy

    from ..embed.trim import TrimError, save_trimmed, trim_word_vectors

    try:
        nlp = spacy.load(pipeline)
    except Exception as e:  # a pipeline folder spaCy cannot read: one line, not a traceback
        fail(f"PIPELINE {pipeline} could not be loaded: {e}. Fix: pass a pipeline saved by spacy train.")
    try:
        report = trim_word_vectors(nlp, rows, dtype)
    except TrimError as e:
        fail(str(e))
    write_pipeline(nlp, output, lambda n, path: save_trimmed(n, report, path))
    typer.echo(
        f"{report.component}: vectors {report.old_rows} -> {report.new_rows} rows ({dtype}) "
        f"({len(report.removed_keys)} words now read <unk>); {report.tuned_rows} fine-tuned rows moved into "
        f"the vectors table; {pipeline} {_size_mb(pipeline):.1f} MB -> {output} {_size_mb(output):.1f} MB"
    )
