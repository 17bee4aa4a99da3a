"""The annotation job: arguments checked, shards resumed, documents annotated
with ``nlp.pipe`` (here) or a Ray Data pipeline (:mod:`.ray_mode`)."""
import itertools
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

from .inputs import JSONL, AnnotateError, InputFile, Line, find_inputs, iter_lines, parse
from .shards import FORMATS, Manifest, ShardWriter, line_digest, lock_output, pending_lines


@dataclass
class AnnotateSettings:
    """How :func:`annotate` reads, annotates and writes (the CLI options of ``spacy-ldnet annotate``)."""

    text_field: str = "text"
    input_format: str = "auto"
    format: str = "jsonl"
    shard_size: int = 10_000
    n_process: int = 1
    batch_size: int = 128
    threads: int = 1
    ray: bool = False
    ray_address: Optional[str] = None
    progress: bool = True


@dataclass
class AnnotateSummary:
    """What one call of :func:`annotate` did: documents and words annotated
    now, documents found done from an earlier run, shard count and wall time (s)."""

    docs: int
    words: int
    skipped_docs: int
    shards: int
    seconds: float


def check_settings(settings: AnnotateSettings) -> None:
    """Raise :class:`AnnotateError` for a setting out of range."""
    for option, value in (("--shard-size", settings.shard_size), ("--n-process", settings.n_process),
                          ("--batch-size", settings.batch_size), ("--threads", settings.threads)):
        if value < 1:
            raise AnnotateError(f"{option} {value}: must be at least 1. Fix: e.g. {option} {getattr(AnnotateSettings, option[2:].replace('-', '_'))}.")
    if settings.format not in FORMATS:
        raise AnnotateError(f"--format {settings.format!r} is not one of {', '.join(FORMATS)}. Fix: --format jsonl or --format spacy.")
    if not settings.text_field:
        raise AnnotateError("--text-field is empty. Fix: name the JSONL field that holds the text, e.g. --text-field text.")


def resolve_pipeline(pipeline: str) -> str:
    """``pipeline`` as spacy.load takes it: an absolute directory path, or an installed package name.

    Raises :class:`AnnotateError` if it is neither a pipeline directory nor an installed package."""
    path = Path(pipeline)
    if path.is_dir():
        if not (path / "config.cfg").is_file():
            raise AnnotateError(f"PIPELINE {pipeline} is not a spaCy pipeline directory (no config.cfg). Fix: pass the model-best folder that spacy train wrote.")
        return str(path.resolve())
    from spacy.util import is_package

    if path.exists() or not is_package(pipeline):
        raise AnnotateError(f"PIPELINE {pipeline} not found: neither a pipeline directory nor an installed pipeline package. Fix: pass e.g. training/conll03_ldnet/model-best.")
    return pipeline


def load_pipeline(pipeline: str, threads: int):
    """``spacy.load(pipeline)`` with ``threads`` torch threads; errors become :class:`AnnotateError`."""
    import spacy
    import torch

    torch.set_num_threads(threads)
    try:
        return spacy.load(pipeline)
    except Exception as e:  # a broken pipeline can fail in any component's loader
        raise AnnotateError(f"PIPELINE {pipeline} could not be loaded by spacy.load ({type(e).__name__}: {e}). Fix: pass the model-best folder that spacy train wrote.") from e


def text_key(source: InputFile, text_field: str) -> str:
    """The record field that holds the text: ``text_field`` for JSONL, ``"text"`` for plain text."""
    return text_field if source.kind == JSONL else "text"


class Progress:
    """A tqdm bar counting documents, with words/s in its postfix."""

    def __init__(self, total: Optional[int], enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=total, unit="doc", disable=not enabled, dynamic_ncols=True, mininterval=0.5, smoothing=0.1)
        self.start = time.perf_counter()
        self.docs = self.words = 0
        self._shown = self.start

    def update(self, docs: int, words: int) -> None:
        self.docs += docs
        self.words += words
        self.bar.update(docs)
        now = time.perf_counter()
        if now - self._shown > 0.5:
            self._shown = now
            self.bar.set_postfix_str(f"{self.words / (now - self.start):,.0f} words/s", refresh=False)

    def close(self) -> float:
        self.bar.close()
        return time.perf_counter() - self.start


def annotate(pipeline: str, input_spec: str, output: Path, settings: Optional[AnnotateSettings] = None) -> AnnotateSummary:
    """Annotate every document of ``input_spec`` with ``pipeline`` into shards under ``output``.

    The files read and written are described in :mod:`spacy_ldnet.annotate`.
    A run killed at any point and rerun with the same arguments resumes
    after the last finished shard. Raises :class:`AnnotateError` for bad
    arguments or input (file:line), a changed input on resume, or Ray
    missing with ``settings.ray``.
    """
    settings = settings or AnnotateSettings()
    check_settings(settings)
    pipeline = resolve_pipeline(pipeline)
    inputs = find_inputs(input_spec, settings.input_format)
    output = Path(output)
    out = output.resolve()
    for source in inputs:
        if out in source.path.resolve().parents:
            raise AnnotateError(f"INPUT file {source.path} is inside OUTPUT {output}. Fix: pass an OUTPUT outside the input.")
    resume = {"format": settings.format, "shard_size": settings.shard_size, "text_field": settings.text_field,
              "pipeline": pipeline, "inputs": [str(s.path.resolve()) for s in inputs]}
    manifest = Manifest.open(output, resume)
    lock = lock_output(output)
    try:
        for stale in output.glob("*.tmp"):
            stale.unlink()
        manifest.save()
        lines = pending_lines(iter_lines(inputs), manifest, settings.shard_size, output)
        writer = ShardWriter(output, manifest, settings.format, settings.shard_size)
        if settings.ray:
            from .ray_mode import run_ray

            progress = run_ray(pipeline, inputs, lines, writer, settings)
        elif settings.n_process > 1:
            progress = run_processes(pipeline, inputs, lines, writer, settings)
        else:
            nlp = load_pipeline(pipeline, settings.threads)
            progress = Progress(None, settings.progress)
            run_local(nlp, inputs, lines, writer, settings, progress)
        seconds = progress.close()
        writer.close(complete=True)
    finally:
        lock.close()
    total = sum(s["docs"] for s in manifest.shards.values())
    return AnnotateSummary(progress.docs, progress.words, total - progress.docs, len(manifest.shards), seconds)


def annotate_lines(nlp, ents: bool, lines: Sequence[Line], inputs: Sequence[InputFile],
                   settings: AnnotateSettings) -> List[Tuple[Any, int]]:
    """``(payload, words)`` per line, in order: the line's JSONL output record,
    or its Doc as DocBin bytes, annotated with ``nlp.pipe`` inside
    ``nlp.memory_zone()`` so that the vocab of a long run does not grow
    without bound (the payloads hold no reference into it). Raises
    :class:`AnnotateError` for a line that does not parse."""
    from .records import docbin_bytes, json_line, with_fields

    parsed = [parse(line, inputs, settings.text_field) for line in lines]
    out: List[Tuple[Any, int]] = []
    with nlp.memory_zone():
        docs = nlp.pipe((text for text, _ in parsed), batch_size=settings.batch_size)
        for line, (_, record), doc in zip(lines, parsed, docs):
            if settings.format == "jsonl":
                payload: Any = json_line(doc, record, ents)
            else:
                payload = docbin_bytes(with_fields(doc, record, text_key(inputs[line.file], settings.text_field)))
            out.append((payload, len(doc)))
    return out


def run_local(nlp, inputs: Sequence[InputFile], lines: Iterable[Line], writer: ShardWriter,
              settings: AnnotateSettings, progress: Progress) -> None:
    """Annotate ``lines`` in this process, a batch at a time."""
    from .records import writes_ents

    ents = writes_ents(nlp)
    for batch in shard_batches(lines, settings):
        for line, (payload, words) in zip(batch, annotate_lines(nlp, ents, batch, inputs, settings)):
            writer.add(line.index, line_digest(line.raw), payload, words)
            progress.update(1, words)


def shard_batches(lines: Iterable[Line], settings: AnnotateSettings) -> Iterator[List[Line]]:
    """Batches of ``4 * batch_size`` lines that never cross a shard boundary, so
    that ``nlp.pipe`` sees the same batches as a Ray actor does and every mode
    writes the same bytes."""
    for _, shard_lines in itertools.groupby(lines, key=lambda line: line.index // settings.shard_size):
        yield from batched(shard_lines, settings.batch_size * 4)


def batched(items: Iterable[Any], size: int) -> Iterator[List[Any]]:
    """Lists of ``size`` consecutive items (the last may be shorter)."""
    iterator = iter(items)
    while True:
        batch = list(itertools.islice(iterator, size))
        if not batch:
            return
        yield batch


#: The pipeline of a worker process of :func:`run_processes`, loaded once by :func:`_start_worker`.
_WORKER: Dict[str, Any] = {}


def _start_worker(pipeline: str, inputs: Sequence[InputFile], settings: AnnotateSettings) -> None:
    from .records import writes_ents

    nlp = load_pipeline(pipeline, settings.threads)
    _WORKER.update(nlp=nlp, ents=writes_ents(nlp), inputs=inputs, settings=settings)


def _worker_ready() -> bool:
    return "nlp" in _WORKER


def _annotate_in_worker(lines: List[Line]) -> List[Tuple[Any, int]]:
    w = _WORKER
    return annotate_lines(w["nlp"], w["ents"], lines, w["inputs"], w["settings"])


def run_processes(pipeline: str, inputs: Sequence[InputFile], lines: Iterable[Line], writer: ShardWriter,
                  settings: AnnotateSettings) -> Progress:
    """Annotate ``lines`` in ``settings.n_process`` worker processes
    (``settings.threads`` torch threads each), each of which loads the pipeline once; this process reads
    the input, hands out batches of lines (:func:`shard_batches`) (at most two per
    worker in flight, so memory stays bounded) and writes the results in input
    order. Returns the progress counts, timed from all workers ready."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    n = settings.n_process
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no torch state inherited
    with ProcessPoolExecutor(n, mp_context=context, initializer=_start_worker, initargs=(pipeline, inputs, settings)) as pool:
        for ready in [pool.submit(_worker_ready) for _ in range(n)]:
            ready.result()  # a worker that cannot load the pipeline raises its AnnotateError here
        progress = Progress(None, settings.progress)
        in_flight: deque = deque()

        def write_oldest() -> None:
            batch, future = in_flight.popleft()
            for line, (payload, words) in zip(batch, future.result()):
                writer.add(line.index, line_digest(line.raw), payload, words)
                progress.update(1, words)

        for batch in shard_batches(lines, settings):
            in_flight.append((batch, pool.submit(_annotate_in_worker, batch)))
            if len(in_flight) > 2 * n:
                write_oldest()
        while in_flight:
            write_oldest()
    return progress
