"""``spacy-ldnet annotate --ray``: the same job as a Ray Data pipeline.

1. Plan (driver): the shards still to write, each as segments ``[file,
   byte offset, line number, first document, documents]``; every line is
   parsed once here, so bad input stops the run before Ray starts.
2. Read (Ray tasks, ``flat_map``): each shard's lines, read at their offsets
   (a gzip file is decompressed from its start up to the offset).
3. Annotate (``map_batches`` with a pool of ``n_process`` actors, each
   loading the pipeline once and holding ``threads`` CPUs): ``nlp.pipe``.
4. Write (driver): the batches, in input order (``preserve_order``), go to
   the same :class:`~spacy_ldnet.annotate.shards.ShardWriter` as without
   Ray, so the shards, the manifest and resuming are the same.

On a cluster, every node must have spacy-ldnet installed and read the
pipeline and input at the same paths; the output is written by the driver.
Requires ``pip install spacy-ldnet[ray]``.
"""
import itertools
import json
import logging
import os
import socket
from typing import Any, Dict, Iterable, List, Sequence

from .core import AnnotateSettings, Progress, annotate_lines, load_pipeline
from .inputs import AnnotateError, InputFile, Line, iter_file, parse
from .shards import ShardWriter, line_digest

RAY_MISSING = "--ray needs Ray Data, which is not installed. Fix: pip install 'spacy-ldnet[ray]' (or pip install 'ray[data]')."


def shard_plan(lines: Iterable[Line], inputs: Sequence[InputFile], settings: AnnotateSettings) -> List[Dict[str, Any]]:
    """One row per shard to write: ``{"shard", "docs", "segments"}`` (segments as a JSON string).
    Parses every line, so an :class:`AnnotateError` names a bad line before anything runs."""
    plan = []
    for shard, group in itertools.groupby(lines, key=lambda line: line.index // settings.shard_size):
        segments: List[List[int]] = []
        for line in group:
            parse(line, inputs, settings.text_field)
            if segments and segments[-1][0] == line.file:
                segments[-1][4] += 1
            else:
                segments.append([line.file, line.offset, line.line_no, line.index, 1])
        plan.append({"shard": shard, "docs": sum(s[4] for s in segments), "segments": json.dumps(segments)})
    return plan


def read_shard(row: Dict[str, Any], inputs: Sequence[InputFile]) -> List[Dict[str, Any]]:
    """The read step: the lines of one planned shard, as rows ``{"index", "file", "line_no", "raw"}``."""
    rows = []
    for file_no, offset, line_no, first, count in json.loads(row["segments"]):
        lines = iter_file(inputs[file_no], file_no, first, offset=offset, line_no=line_no)
        for line in itertools.islice(lines, count):
            rows.append({"index": line.index, "file": line.file, "line_no": line.line_no, "raw": line.raw})
    return rows


class Annotator:
    """The annotate step: one Ray actor, which loads the pipeline once and
    turns a pyarrow batch of lines into ``{"index", "digest", "payload", "words"}``."""

    def __init__(self, pipeline: str, inputs: Sequence[InputFile], settings: AnnotateSettings):
        from .records import writes_ents

        self.nlp = load_pipeline(pipeline, settings.threads)
        self.inputs, self.settings = inputs, settings
        self.ents = writes_ents(self.nlp)

    def __call__(self, batch):
        import pyarrow

        columns = batch.to_pydict()
        lines = [Line(i, f, n, 0, raw) for i, f, n, raw in zip(columns["index"], columns["file"], columns["line_no"], columns["raw"])]
        payloads, words = zip(*annotate_lines(self.nlp, self.ents, lines, self.inputs, self.settings)) if lines else ((), ())
        return pyarrow.table({
            "index": pyarrow.array(columns["index"], pyarrow.int64()),
            "digest": pyarrow.array([line_digest(line.raw) for line in lines], pyarrow.binary()),
            "payload": pyarrow.array(list(payloads), pyarrow.string() if self.settings.format == "jsonl" else pyarrow.binary()),
            "words": pyarrow.array(list(words), pyarrow.int64()),
        })


def run_ray(pipeline: str, inputs: Sequence[InputFile], lines: Iterable[Line], writer: ShardWriter,
            settings: AnnotateSettings) -> Progress:
    """Plan, then run the Ray Data pipeline and write its output in order; returns the progress counts."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise AnnotateError(RAY_MISSING) from e
    if settings.ray_address and not ray.is_initialized():
        _check_reachable(settings.ray_address)
    plan = shard_plan(lines, inputs, settings)
    if not plan:
        return Progress(0, settings.progress)
    started = _init_ray(ray, settings)
    progress = Progress(sum(row["docs"] for row in plan), settings.progress)  # timed from here: Ray is up
    try:
        context = ray.data.DataContext.get_current()
        context.execution_options.preserve_order = True
        context.enable_progress_bars = False
        dataset = (
            ray.data.from_items(plan, override_num_blocks=len(plan))
            .flat_map(read_shard, fn_kwargs={"inputs": inputs})
            .map_batches(
                Annotator, fn_constructor_kwargs={"pipeline": pipeline, "inputs": inputs, "settings": settings},
                compute=ray.data.ActorPoolStrategy(size=settings.n_process), num_cpus=settings.threads,
                batch_size=settings.batch_size, batch_format="pyarrow",
            )
        )
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            columns = batch.to_pydict()
            for index, digest, payload, words in zip(columns["index"], columns["digest"], columns["payload"], columns["words"]):
                writer.add(index, digest, payload, words)
                progress.update(1, words)
    except Exception as e:
        cause = _annotate_error_in(e)
        if cause is not None:
            raise cause from None
        raise
    finally:
        if started:
            ray.shutdown()
    return progress


def _init_ray(ray, settings: AnnotateSettings) -> bool:
    """Connect to ``settings.ray_address``, or start a local Ray instance with
    enough CPUs for the actors and one read task; False if Ray was already running."""
    if ray.is_initialized():
        return False
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    options: Dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.ERROR}
    try:
        if settings.ray_address:
            ray.init(address=settings.ray_address, **options)
        else:
            ray.init(num_cpus=max(os.cpu_count() or 1, settings.n_process * settings.threads + 1), **options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"--ray-address {settings.ray_address}" if settings.ray_address else "a local Ray instance"
        raise AnnotateError(f"{where}: Ray could not start or connect ({type(e).__name__}: {e}). Fix: check the address (e.g. auto, or ray://HEAD:10001), or leave --ray-address out for a local instance.") from e
    return True


def _check_reachable(address: str) -> None:
    """Fail at once if ``HOST:PORT`` or ``ray://HOST:PORT`` does not accept a TCP
    connection (Ray itself retries for minutes); ``auto`` and others are left to Ray."""
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as e:
        raise AnnotateError(f"--ray-address {address}: nothing answers there ({e}). Fix: pass the address of a running Ray head (ray start --head prints it), or leave --ray-address out for a local instance.") from e


def _annotate_error_in(error: BaseException):
    """The :class:`AnnotateError` that a Ray task raised, found in the exception's chain (None if none)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, AnnotateError):
            return AnnotateError(str(error).splitlines()[-1] if "\n" in str(error) else str(error))
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
