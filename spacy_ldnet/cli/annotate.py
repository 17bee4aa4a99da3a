"""``spacy-ldnet annotate PIPELINE INPUT OUTPUT``: annotate a corpus of any size
into resumable shards (see :mod:`spacy_ldnet.annotate`)."""
from pathlib import Path

import typer

from . import app
from .prune import fail

HELP = """Annotate a corpus of any size with a trained pipeline, into resumable shards.

INPUT is read as a stream, so memory does not grow with the corpus. It is a
file, a directory (its files, sorted by name) or a quoted glob pattern such as
'corpus/**/*.jsonl.gz'. Each file is plain text, one document per line, or
JSONL, one JSON object per line with the text under --text-field; gzip files
are recognised by their content. The file name tells the two formats apart
(.txt or .jsonl, optionally .gz) unless --input-format says. Blank lines are
skipped.

OUTPUT is a directory of shards of --shard-size documents in input order:
shard-000000.jsonl, shard-000001.jsonl, ... Each line is the input record
({"text": ...} for plain text) plus "entities": [{"start", "end", "label"}]
(character offsets, end exclusive) when the pipeline writes doc.ents, and
"spans": {KEY: [...]} for the span groups it writes (a spans_key pipeline,
e.g. chunks), with a "score" per span when the group carries scores. Input
fields with those names are replaced. With --format spacy the shards are
DocBin files (shard-000000.spacy) and the other input fields are kept in
doc.user_data["fields"]. manifest.json lists the finished shards.

Resuming: a shard is written under a temporary name and renamed when it is
complete. Rerun the same command after a crash or a kill and it checks the
finished shards against the input, skips them and goes on, so every input
document ends up in exactly one shard. A rerun must use the same PIPELINE,
INPUT, --format, --shard-size and --text-field.

If the input of a finished shard has changed, the rerun stops rather than mix
two inputs; a short last shard is rewritten if documents were appended.

Speed: --n-process N runs N worker processes that each load the pipeline
once and run --threads torch threads; this process reads the input and
writes the output in order. --ray runs the same job as a Ray Data pipeline
(pip install 'spacy-ldnet\\[ray]'): a local Ray instance, or the cluster at
--ray-address, with --n-process actors that each load the pipeline once.

\b
Examples:
  spacy-ldnet annotate model-best news.txt.gz out/
  spacy-ldnet annotate model-best 'docs/*.jsonl.gz' out/ --text-field body
  spacy-ldnet annotate model-best docs/ out/ --n-process 2 --format spacy
  spacy-ldnet annotate model-best docs/ out/ --ray --n-process 8
"""


@app.command("annotate", help=HELP)
def annotate_command(
    pipeline: str = typer.Argument(..., metavar="PIPELINE", help="The pipeline: a directory written by spacy train (e.g. training/conll03_ldnet/model-best) or an installed pipeline package."),
    input_spec: str = typer.Argument(..., metavar="INPUT", help="A text or JSONL file (.gz or not), a directory of them, or a quoted glob pattern."),
    output: Path = typer.Argument(..., metavar="OUTPUT", help="The output directory (created if missing; a rerun resumes in it)."),
    text_field: str = typer.Option("text", "--text-field", help="JSONL: the field that holds the text; the other fields are carried to the output."),
    input_format: str = typer.Option("auto", "--input-format", help="auto (from the file name: .txt, .jsonl, .ndjson, .json, each optionally .gz), text or jsonl."),
    output_format: str = typer.Option("jsonl", "--format", help="jsonl (records with entities/spans) or spacy (DocBin shards)."),
    shard_size: int = typer.Option(10_000, "--shard-size", help="Documents per shard: the unit of writing and of resuming."),
    n_process: int = typer.Option(1, "--n-process", help="Worker processes, each loading the pipeline once; with --ray, the number of Ray actors."),
    batch_size: int = typer.Option(128, "--batch-size", help="Documents per nlp.pipe batch (and per Ray actor call)."),
    threads: int = typer.Option(1, "--threads", help="torch threads of the process, or of each worker process or Ray actor."),
    ray: bool = typer.Option(False, "--ray", help="Run as a Ray Data pipeline (needs the ray extra); a local Ray instance unless --ray-address."),
    ray_address: str = typer.Option(None, "--ray-address", help="Address of an existing Ray cluster (e.g. auto, or ray://HEAD:10001); implies --ray. Every node must read PIPELINE and INPUT at the same paths."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar (documents/s, words/s) on stderr."),
) -> None:
    from ..annotate import AnnotateError, AnnotateSettings, annotate
    from ..annotate.core import check_settings

    settings = AnnotateSettings(
        text_field=text_field, input_format=input_format, format=output_format, shard_size=shard_size,
        n_process=n_process, batch_size=batch_size, threads=threads, ray=ray or bool(ray_address),
        ray_address=ray_address, progress=progress,
    )
    try:
        check_settings(settings)
        summary = annotate(pipeline, input_spec, output, settings)
    except AnnotateError as e:
        fail(str(e))
    except KeyboardInterrupt:
        typer.echo(f"Interrupted. Rerun the same command to resume: the finished shards in {output} are kept.", err=True)
        raise typer.Exit(130)
    if summary.docs == 0:
        typer.echo(f"nothing to do: all {summary.skipped_docs} documents are in {output} ({summary.shards} shards)")
        return
    rate = summary.words / summary.seconds if summary.seconds > 0 else 0.0
    done = f"; {summary.skipped_docs} documents were done before" if summary.skipped_docs else ""
    typer.echo(
        f"annotated {summary.docs} documents ({summary.words} words) in {summary.seconds:.1f} s, "
        f"{rate:,.0f} words/s{done}; {output} holds {summary.shards} shards"
    )
