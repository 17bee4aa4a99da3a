"""The input side of ``spacy-ldnet annotate``: which files, in which order,
and one :class:`Line` per document, streamed with bounded memory.

INPUT is a file, a directory (its files, not hidden ones, sorted by name; not
recursive) or a glob pattern (sorted matches; ``**`` recurses). Each file is
plain text (one document per line) or JSONL (one JSON object per line, the
text under ``text_field``), read as UTF-8 whether gzip-compressed or not
(gzip is recognised by its magic bytes, not its name). Lines that are empty
or whitespace only are not documents and are skipped; every other line is
one document, numbered 0, 1, 2, ... across the files in order.
"""
import glob
import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Sequence, Tuple

import srsly

TEXT = "text"
JSONL = "jsonl"
INPUT_FORMATS = ("auto", TEXT, JSONL)
_SUFFIXES = {".txt": TEXT, ".text": TEXT, ".jsonl": JSONL, ".ndjson": JSONL, ".json": JSONL}
_GZIP_MAGIC = b"\x1f\x8b"


class AnnotateError(ValueError):
    """A bad argument or input of :func:`spacy_ldnet.annotate.annotate`; the
    message names the value (``file:line`` for input lines) and the fix."""


@dataclass(frozen=True)
class InputFile:
    """One input file: its path, ``kind`` (``"text"`` or ``"jsonl"``) and whether it is gzip-compressed."""

    path: Path
    kind: str
    gzip: bool

    def open(self) -> IO[bytes]:
        """The file's (decompressed) bytes; seekable (a gzip file seeks by decompressing)."""
        return gzip.open(self.path, "rb") if self.gzip else open(self.path, "rb")


@dataclass(frozen=True)
class Line:
    """One document's line: its number ``index`` across all inputs (from 0),
    ``file`` (position in the input list), 1-based ``line_no``, the byte
    ``offset`` of the line in the decompressed file, and the ``raw`` bytes."""

    index: int
    file: int
    line_no: int
    offset: int
    raw: bytes


def find_inputs(spec: str, input_format: str = "auto") -> List[InputFile]:
    """The input files named by ``spec`` (a file, a directory or a glob pattern), in reading order.

    Raises :class:`AnnotateError` if nothing exists there, a directory or
    pattern holds no files, or (``input_format="auto"``) a file's name does
    not tell plain text (``.txt``, ``.text``) from JSONL (``.jsonl``,
    ``.ndjson``, ``.json``), each optionally followed by ``.gz``.
    """
    if input_format not in INPUT_FORMATS:
        raise AnnotateError(f"--input-format {input_format!r} is not one of {', '.join(INPUT_FORMATS)}.")
    path = Path(spec)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        where = f"directory {spec}"
    elif path.is_file():
        files = [path]
        where = spec
    elif glob.has_magic(spec):
        files = sorted(Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file())
        where = f"pattern {spec}"
    else:
        raise AnnotateError(f"INPUT {spec} not found. Fix: pass an existing file, a directory of files or a glob pattern such as 'corpus/*.jsonl.gz'.")
    if not files:
        raise AnnotateError(f"INPUT {where} holds no files. Fix: pass a directory or pattern that matches text or JSONL files.")
    return [InputFile(p, _kind_of(p, input_format), _is_gzip(p)) for p in files]


def _kind_of(path: Path, input_format: str) -> str:
    if input_format != "auto":
        return input_format
    name = path.name[: -len(".gz")] if path.name.endswith(".gz") else path.name
    kind = _SUFFIXES.get(Path(name).suffix.lower())
    if kind is None:
        raise AnnotateError(
            f"INPUT file {path}: its name does not say whether it is plain text (.txt) or JSONL (.jsonl). "
            f"Fix: pass --input-format text or --input-format jsonl, or rename it."
        )
    return kind


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == _GZIP_MAGIC


def iter_lines(inputs: Sequence[InputFile]) -> Iterator[Line]:
    """Every document line of ``inputs`` in order (blank lines skipped), numbered from 0."""
    index = 0
    for file_no, source in enumerate(inputs):
        for line in iter_file(source, file_no, index):
            yield line
            index += 1


def iter_file(source: InputFile, file_no: int, first_index: int, *, offset: int = 0, line_no: int = 1) -> Iterator[Line]:
    """The document lines of one file from byte ``offset`` (which starts line ``line_no``), numbered from ``first_index``."""
    index = first_index
    try:
        with source.open() as f:
            if offset:
                f.seek(offset)
            for raw in f:
                if raw.strip():
                    yield Line(index, file_no, line_no, offset, raw)
                    index += 1
                offset += len(raw)
                line_no += 1
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise AnnotateError(f"{source.path}:{line_no}: could not be read ({type(e).__name__}: {e}). Fix: check the file (a truncated or corrupt gzip file?).") from e


def parse(line: Line, inputs: Sequence[InputFile], text_field: str) -> Tuple[str, Dict[str, Any]]:
    """``(text, record)`` of a document line: the record is the JSON object of
    a JSONL line, or ``{"text": line}`` for plain text (line end removed).

    Raises :class:`AnnotateError` naming ``file:line`` if the line is not
    UTF-8, not a JSON object, or has no string under ``text_field``.
    """
    source = inputs[line.file]
    where = f"{source.path}:{line.line_no}"
    try:
        decoded = line.raw.decode("utf8")
    except UnicodeDecodeError as e:
        raise AnnotateError(f"{where}: not UTF-8 ({e}). Fix: convert the file to UTF-8.") from e
    if line.line_no == 1:
        decoded = decoded.lstrip("\ufeff")
    if source.kind == TEXT:
        text = decoded.rstrip("\r\n")
        return text, {"text": text}
    try:
        record = srsly.json_loads(decoded)
    except ValueError as e:
        raise AnnotateError(f"{where}: not JSON ({e}). Fix: make each line one JSON object, or pass --input-format text for plain text.") from e
    if not isinstance(record, dict):
        raise AnnotateError(f"{where}: a JSON {type(record).__name__}, not an object. Fix: make each line one JSON object such as {{\"{text_field}\": \"...\"}}.")
    if text_field not in record:
        fields = ", ".join(map(str, record)) or "none"
        raise AnnotateError(f"{where}: no field {text_field!r} (fields: {fields}). Fix: pass --text-field with the field that holds the text.")
    text = record[text_field]
    if not isinstance(text, str):
        raise AnnotateError(f"{where}: field {text_field!r} is a {type(text).__name__}, not a string. Fix: pass --text-field with the field that holds the text.")
    return text, record
