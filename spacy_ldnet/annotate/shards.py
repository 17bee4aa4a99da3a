"""The output side of ``spacy-ldnet annotate``: shards, the manifest, resuming.

Document ``i`` (numbered as in :mod:`spacy_ldnet.annotate.inputs`) goes to
shard ``i // shard_size``, file ``shard-NNNNNN.jsonl`` (or ``.spacy``). A
shard is written to ``shard-NNNNNN.jsonl.tmp``, flushed to disk and renamed
into place; then ``manifest.json`` (also written to a temporary name and
renamed) records it: documents, words, and a digest of its input lines.

On a rerun a shard counts as done when the manifest lists it and its file
exists; its input lines are read again (not annotated) and must give the
same digest, else the run stops, because the output would mix two inputs.
Every other shard is written again from the start, so a run killed at any
point and rerun with the same arguments leaves each document in exactly one
shard, in input order. A done last shard that is shorter than
``shard_size`` is written again if the input has since grown.
"""
import fcntl
import hashlib
import os
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Optional, Sequence, Union

import srsly

from .inputs import AnnotateError, Line

MANIFEST = "manifest.json"
LOCK = ".annotate.lock"
FORMATS = ("jsonl", "spacy")
#: The settings a rerun must repeat to resume (they decide the shards' contents).
RESUME_SETTINGS = ("format", "shard_size", "text_field", "pipeline", "inputs")


def shard_name(shard: int, fmt: str) -> str:
    """``shard-000042.jsonl``: the file of shard 42."""
    return f"shard-{shard:06d}.{fmt}"


def line_digest(raw: bytes) -> bytes:
    """A 16-byte digest of one input line (its line end ignored)."""
    return hashlib.blake2b(raw.rstrip(b"\r\n"), digest_size=16).digest()


def shard_digest(digests: Sequence[bytes]) -> str:
    """The hex digest of a shard's input: of its lines' :func:`line_digest` in order."""
    return hashlib.blake2b(b"".join(digests), digest_size=16).hexdigest()


class Manifest:
    """``OUTPUT/manifest.json``: the run's settings and the shards done.

    ``settings`` holds :data:`RESUME_SETTINGS`; ``shards`` maps a shard number
    to ``{"file", "first_doc", "docs", "words", "digest"}``.
    """

    def __init__(self, output: Path, settings: Dict[str, Any]):
        self.path = output / MANIFEST
        self.settings = settings
        self.shards: Dict[int, Dict[str, Any]] = {}
        self.complete = False

    @classmethod
    def open(cls, output: Path, settings: Dict[str, Any]) -> "Manifest":
        """The manifest of ``output`` (created if new). Raises
        :class:`AnnotateError` if ``output`` is a file, a non-empty directory
        without a manifest, or was written with other :data:`RESUME_SETTINGS`."""
        if output.exists() and not output.is_dir():
            raise AnnotateError(f"OUTPUT {output} is a file. Fix: pass a directory (it is created if missing).")
        manifest = cls(output, settings)
        if not manifest.path.exists():
            if output.exists() and any(p.name != LOCK and p.suffix != ".tmp" for p in output.iterdir()):
                raise AnnotateError(f"OUTPUT {output} is not empty and has no {MANIFEST} (it was not written by spacy-ldnet annotate). Fix: pass a new or empty directory.")
            output.mkdir(parents=True, exist_ok=True)
            return manifest
        try:
            data = srsly.read_json(manifest.path)
            saved = {key: data["settings"][key] for key in RESUME_SETTINGS}
            shards = {int(s["shard"]): s for s in data["shards"]}
        except (ValueError, KeyError, TypeError) as e:
            raise AnnotateError(f"{manifest.path} is not a manifest of spacy-ldnet annotate ({type(e).__name__}: {e}). Fix: pass a new OUTPUT directory.") from e
        for key in RESUME_SETTINGS:
            if saved[key] != settings[key]:
                raise AnnotateError(
                    f"OUTPUT {output} was written with {key} = {saved[key]!r}, this run has {settings[key]!r}; "
                    f"resuming would mix two outputs. Fix: rerun with the same arguments, or pass a new OUTPUT."
                )
        manifest.shards = {n: s for n, s in shards.items() if (output / s["file"]).is_file()}
        return manifest

    def record(self, entry: Dict[str, Any]) -> None:
        """Add one finished shard and save."""
        self.shards[int(entry["shard"])] = entry
        self.save()

    def save(self) -> None:
        shards = [self.shards[n] for n in sorted(self.shards)]
        data = {
            "settings": self.settings, "complete": self.complete,
            "docs": sum(s["docs"] for s in shards), "words": sum(s["words"] for s in shards), "shards": shards,
        }
        _write_atomic(self.path, lambda f: f.write(srsly.json_dumps(data, indent=2).encode("utf8")))


def lock_output(output: Path) -> IO:
    """Hold an exclusive lock on ``output`` for this process's lifetime (released when it exits, even if killed).

    Raises :class:`AnnotateError` if another run holds it."""
    handle = open(output / LOCK, "a")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        handle.close()
        raise AnnotateError(f"OUTPUT {output} is being written by another spacy-ldnet annotate run. Fix: wait for it to end, or pass another OUTPUT.") from e
    return handle


def pending_lines(lines: Iterator[Line], manifest: Manifest, shard_size: int, output: Path) -> Iterator[Line]:
    """The lines of the shards still to write; the lines of done shards are
    checked against their digests and skipped. Raises :class:`AnnotateError`
    if a done shard's input has changed."""
    current, held, digests = -1, [], []
    for line in lines:
        shard = line.index // shard_size
        if shard != current:
            _check_done(manifest, current, digests, output, more=False)
            current, held, digests = shard, [], []
        entry = manifest.shards.get(shard)
        if entry is None:
            yield line
            continue
        if len(digests) == entry["docs"]:  # more lines than the done shard held
            _check_done(manifest, shard, digests, output, more=True)
            del manifest.shards[shard]
            yield from held
            held = []
            yield line
            continue
        digests.append(line_digest(line.raw))
        if entry["docs"] < shard_size:
            held.append(line)
    _check_done(manifest, current, digests, output, more=False)
    extra = [n for n in manifest.shards if n > current]
    if extra:
        _mismatch(output, manifest.shards[min(extra)])


def _check_done(manifest: Manifest, shard: int, digests: List[bytes], output: Path, *, more: bool) -> None:
    entry = manifest.shards.get(shard)
    if entry is None:
        return
    short_and_grown = more and entry["docs"] < manifest.settings["shard_size"]
    if shard_digest(digests) != entry["digest"] or (more and not short_and_grown) or (not more and len(digests) != entry["docs"]):
        _mismatch(output, entry)


def _mismatch(output: Path, entry: Dict[str, Any]) -> None:
    first = entry["first_doc"]
    raise AnnotateError(
        f"OUTPUT {output}: {entry['file']} was written from other input than INPUT now holds "
        f"(documents {first}-{first + entry['docs'] - 1} differ). Fix: pass a new OUTPUT, or delete {output} to start over."
    )


class ShardWriter:
    """Writes the annotated documents, in input order, into shards.

    :meth:`add` takes document ``index``, its input line's :func:`line_digest`,
    the ``payload`` (a JSON line for ``jsonl``; a ``Doc`` or the bytes of a
    one-doc ``DocBin`` for ``spacy``) and its word count. A shard is renamed
    into place and recorded in the manifest once its last document arrives
    (or at :meth:`close`, for the last shard).
    """

    def __init__(self, output: Path, manifest: Manifest, fmt: str, shard_size: int):
        self.output, self.manifest, self.fmt, self.shard_size = output, manifest, fmt, shard_size
        self.shard: Optional[int] = None
        self.next_index = 0
        self._file: Optional[IO[bytes]] = None
        self._docbin = None
        self._digests: List[bytes] = []
        self._words = 0

    def add(self, index: int, digest: bytes, payload: Union[str, bytes, Any], words: int) -> None:
        shard = index // self.shard_size
        if shard != self.shard:
            self._finish()
            self._start(shard, index)
        if index != self.next_index:  # the pipeline returned documents out of order or lost some
            raise RuntimeError(f"document {index} arrived where {self.next_index} was expected")
        self.next_index += 1
        self._digests.append(digest)
        self._words += words
        if self.fmt == "jsonl":
            self._file.write(payload.encode("utf8") + b"\n")
        elif isinstance(payload, bytes):
            from spacy.tokens import DocBin

            self._docbin.merge(DocBin(store_user_data=True).from_bytes(payload))
        else:
            self._docbin.add(payload)

    def close(self, *, complete: bool) -> None:
        """Finish the open shard; ``complete``: all input was read (the manifest says so)."""
        self._finish()
        self.manifest.complete = complete
        self.manifest.save()

    def _start(self, shard: int, index: int) -> None:
        self.shard, self.next_index, self._digests, self._words = shard, index, [], 0
        if self.fmt == "jsonl":
            self._file = open(self._tmp_path(), "wb")
        else:
            from spacy.tokens import DocBin

            self._docbin = DocBin(store_user_data=True)

    def _tmp_path(self) -> Path:
        return self.output / (shard_name(self.shard, self.fmt) + ".tmp")

    def _finish(self) -> None:
        if self.shard is None:
            return
        name = shard_name(self.shard, self.fmt)
        if self.fmt == "jsonl":
            _sync_and_rename(self._file, self.output / name)
        else:
            _write_atomic(self.output / name, lambda f: f.write(self._docbin.to_bytes()))
        self.manifest.record({
            "shard": self.shard, "file": name, "first_doc": self.shard * self.shard_size,
            "docs": len(self._digests), "words": self._words, "digest": shard_digest(self._digests),
        })
        self.shard, self._file, self._docbin, self._digests = None, None, None, []


def _write_atomic(path: Path, write) -> None:
    """``write(f)`` to ``path.tmp``, flush it to disk, rename it to ``path``."""
    f = open(path.with_name(path.name + ".tmp"), "wb")
    write(f)
    _sync_and_rename(f, path)


def _sync_and_rename(f: IO[bytes], path: Path) -> None:
    """Flush the open temporary file ``f`` to disk, close it and rename it to ``path``."""
    with f:
        f.flush()
        os.fsync(f.fileno())
    os.replace(f.name, path)
