"""Read and validate CoNLL column files: tokens, sentences, documents and chunks.

Format (CoNLL-2003 NER, CoNLL-2000 chunking and two-column ``token TAG``
files such as WikiGold): one token per line, columns separated by spaces or
tabs (any run of whitespace), the token in column 1 and the chunk tag in one
column (default: the last). A blank or whitespace-only line ends a sentence.
A line whose first field is ``-DOCSTART-`` (any number of columns) ends a
sentence and a document. In files with three or more columns, column 2 is the
part-of-speech tag (unless it is the tag column). Every token row must have
the file's column count (that of its first token row).

Tag schemes (Tjong Kim Sang & Veenstra 1999, "Representing text chunks";
Ratinov & Roth 2009, "Design challenges and misconceptions in named entity
recognition", section 4):

- IOB1 (CoNLL-2003): ``I-X`` is inside a chunk and starts one after ``O`` or
  another type; ``B-X`` only starts a chunk right after a chunk of type X.
- IOB2 (CoNLL-2000): ``B-X`` starts every chunk, ``I-X`` continues it.
- IOBES (also written BIOES): ``B-`` begin, ``I-`` inside, ``E-`` end, ``S-``
  single-token chunk.
- BILUO (spaCy's): ``B-`` begin, ``I-`` inside, ``L-`` last, ``U-`` unit.

``scheme="auto"`` recognises the scheme from the tags of the whole file:
BILUO if it has ``L-``/``U-`` tags, IOBES if it has ``E-``/``S-`` tags (both
at once is an error), else IOB1 if more chunks start with ``I-X`` than with
``B-X`` (not directly after an X tag), else IOB2.

Repair policy. IOB1 and IOB2 are read the same way, as conlleval reads them:
``B-X`` always starts a chunk and ``I-X`` continues an open X chunk or else
starts one. In IOB2 an ``I-X`` that starts a chunk is ill-formed, and in IOB1
a ``B-X`` that does not follow an X chunk is; both are repaired by that
reading and counted. IOBES and BILUO are not repaired: a chunk that is not
closed, an inside/end tag with no open chunk of its type, or a chunk that
runs past the end of its sentence is an error, because the intended chunk
is ambiguous (a lost end tag, or a mistyped single-token tag). Chunks never
cross sentence boundaries.

Errors (:class:`ConllError`, a ``ValueError``) name ``file:line``, the
offending text and the fix; a file is validated whole before anything uses it.
"""
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

SCHEMES = ("auto", "IOB1", "IOB2", "IOBES", "BILUO")
_ALIASES = {"BIOES": "IOBES", "BILOU": "BILUO"}
#: The tag prefixes (besides ``O``) of each scheme.
PREFIXES: Dict[str, Tuple[str, ...]] = {
    "IOB1": ("B", "I"), "IOB2": ("B", "I"), "IOBES": ("B", "I", "E", "S"), "BILUO": ("B", "I", "L", "U"),
}
DOCSTART = "-DOCSTART-"
_TAG_FORMS = (
    "'O', or PREFIX-LABEL with prefix B/I (IOB1, IOB2), B/I/E/S (IOBES) or B/I/L/U (BILUO), e.g. 'B-LOC'"
)

Chunk = Tuple[int, int, str]
Problem = Optional[Tuple[int, str]]  # (1-based line, what is wrong)


class ConllError(ValueError):
    """A CoNLL file that cannot be read as it is; the message names ``file:line``, the text and the fix."""


@dataclass
class ConllSentence:
    """One sentence: its tokens, part-of-speech tags (or None), raw chunk tags and 1-based line numbers."""

    words: List[str]
    pos: Optional[List[str]]
    tags: List[str]
    lines: List[int]
    chunks: List[Chunk] = field(default_factory=list)  # (start, end, label), token offsets in the sentence


@dataclass
class ConllFile:
    """A validated CoNLL file.

    ``documents`` are split at ``-DOCSTART-`` lines (one document when there
    are none); ``repairs`` counts the ill-formed IOB1/IOB2 tags read by the
    repair policy, ``first_repair`` describes the first (``file:line: ...``).
    """

    path: Path
    documents: List[List[ConllSentence]]
    has_docstart: bool
    n_columns: int
    tag_column: int
    scheme: str
    scheme_detected: bool
    repairs: int = 0
    first_repair: str = ""

    @property
    def sentences(self) -> List[ConllSentence]:
        return [s for doc in self.documents for s in doc]


def normalise_scheme(scheme: str) -> str:
    """The canonical name of ``scheme`` (case-insensitive; BIOES = IOBES, BILOU = BILUO).

    Raises:
        ValueError: not one of auto, IOB1, IOB2, IOBES (BIOES), BILUO.
    """
    name = _ALIASES.get(scheme.upper(), scheme.upper())
    if name == "AUTO":
        return "auto"
    if name not in PREFIXES:
        raise ValueError(
            f"--scheme {scheme!r}: unknown tag scheme. Fix: use one of auto, IOB1, IOB2, IOBES (BIOES), BILUO."
        )
    return name


def _looks_utf16(data: bytes) -> bool:
    """A UTF-16 byte-order mark, or NUL bytes at every other position of the first 200 bytes (ASCII text)."""
    head = data[:200]
    half = len(head) // 2
    nuls = sorted((head[0::2].count(0), head[1::2].count(0)))
    return head[:2] in (b"\xff\xfe", b"\xfe\xff") or (half > 0 and nuls[1] > 0.9 * half and nuls[0] < 0.1 * half)


def decode_conll_bytes(data: bytes, source: str) -> str:
    """``data`` as UTF-8 text (a UTF-8 byte-order mark is dropped).

    Raises:
        ConllError: UTF-16, compressed, binary or otherwise non-UTF-8 data; the
            message names ``source``, where, and how to re-encode it.
    """
    if _looks_utf16(data):
        raise ConllError(
            f"{source} is UTF-16 text; CoNLL files are read as UTF-8. "
            f"Fix: iconv -f UTF-16 -t UTF-8 {source} > {source}.utf8, and convert that file."
        )
    if data[:2] == b"\x1f\x8b":
        raise ConllError(f"{source} is gzip-compressed. Fix: gunzip -k {source}, and convert the text file.")
    if b"\x00" in data:
        line = data[: data.index(b"\x00")].count(b"\n") + 1
        raise ConllError(
            f"{source}:{line}: a NUL byte; this is a binary file, not a CoNLL text file. "
            f"Fix: pass the CoNLL column file (token ... tag, one token per line)."
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        text = data.split(b"\n")[line - 1].decode("utf-8", "backslashreplace").strip()
        raise ConllError(
            f"{source}:{line}: {data[e.start:e.end]!r} in {text!r} is not UTF-8. "
            f"Fix: re-encode the file, e.g. iconv -f LATIN1 -t UTF-8 {source} > {source}.utf8 "
            f"(name its actual encoding after -f)."
        ) from None


Row = Tuple[int, List[str]]  # (1-based line number, fields)


def _split_rows(text: str, source: str) -> Tuple[List[List[List[Row]]], bool, int, int]:
    """``(documents, has_docstart, n_columns, first_row_line)``: documents of sentences of rows."""
    documents: List[List[List[Row]]] = [[[]]]
    has_docstart, n_columns, first = False, 0, 0
    for lineno, raw in enumerate(text.split("\n"), 1):
        fields = raw.split()
        if not fields or fields[0] == DOCSTART:
            if documents[-1][-1]:
                documents[-1].append([])
            if fields:
                has_docstart = True
                documents.append([[]])
            continue
        if not n_columns:
            n_columns, first = len(fields), lineno
            if n_columns < 2:
                raise ConllError(
                    f"{source}:{lineno}: one column ({raw.strip()!r}); a CoNLL row is 'token ... tag'. "
                    f"Fix: add the tag column (e.g. 'word O'), or pass the right file."
                )
        elif len(fields) != n_columns:
            raise ConllError(
                f"{source}:{lineno}: {len(fields)} columns in {raw.strip()!r}, but the file's rows have "
                f"{n_columns} (first token row, line {first}). Fix: give every token row the same columns "
                f"(a missing column, or a token containing a space, shifts the tag column)."
            )
        documents[-1][-1].append((lineno, fields))
    documents = [[s for s in doc if s] for doc in documents]
    return [doc for doc in documents if doc], has_docstart, n_columns, first


def _parse_tag(tag: str, prefixes: Tuple[str, ...]) -> Optional[Tuple[str, str]]:
    """``(prefix, label)``, ``("O", "")`` for O, None when ``tag`` is not a tag of ``prefixes``."""
    if tag == "O":
        return "O", ""
    prefix, dash, label = tag.partition("-")
    if dash and label and prefix in prefixes:
        return prefix, label
    return None


def _detect_scheme(sentences: List[ConllSentence], source: str) -> str:
    """The scheme of the (valid-prefix) tags of all sentences; see the module docstring."""
    seen: Dict[str, Tuple[str, int]] = {}
    starts = {"B": 0, "I": 0}  # chunks opened by B-X / I-X not directly after an X tag
    for s in sentences:
        prev = ""
        for tag, line in zip(s.tags, s.lines):
            prefix, label = _parse_tag(tag, ("B", "I", "E", "S", "L", "U"))
            seen.setdefault(prefix, (tag, line))
            if prefix in starts and prev != label:
                starts[prefix] += 1
            prev = label
    biluo = [seen[p] for p in ("L", "U") if p in seen]
    iobes = [seen[p] for p in ("E", "S") if p in seen]
    if biluo and iobes:
        raise ConllError(
            f"{source}:{biluo[0][1]}: tag {biluo[0][0]!r} is BILUO, but line {iobes[0][1]} has the IOBES tag "
            f"{iobes[0][0]!r}; a file uses one scheme. Fix: correct the tags, or pass --scheme to say which is meant."
        )
    if biluo:
        return "BILUO"
    if iobes:
        return "IOBES"
    return "IOB1" if starts["I"] > starts["B"] else "IOB2"


def _iob_chunks(parsed: List[Tuple[str, str]], scheme: str) -> Tuple[List[Chunk], List[int]]:
    """Chunks of IOB1/IOB2 tags read as conlleval does, and the positions of the repaired tags."""
    chunks: List[Chunk] = []
    repaired: List[int] = []
    start, label = None, ""
    for i, (prefix, lab) in enumerate(parsed + [("O", "")]):
        continues = prefix == "I" and start is not None and lab == label
        if start is not None and not continues:
            chunks.append((start, i, label))
            start = None
        if prefix == "O" or continues:
            continue
        follows_same = i > 0 and parsed[i - 1][0] != "O" and parsed[i - 1][1] == lab
        if (scheme == "IOB2" and prefix == "I") or (scheme == "IOB1" and prefix == "B" and not follows_same):
            repaired.append(i)
        start, label = i, lab
    return chunks, repaired


def _closed_chunks(parsed: List[Tuple[str, str]], scheme: str, lines: List[int]) -> Tuple[List[Chunk], Problem]:
    """Chunks of IOBES or BILUO tags, or ``([], (line, problem))`` at the first ill-formed tag."""
    single, last = ("S", "E") if scheme == "IOBES" else ("U", "L")
    chunks: List[Chunk] = []
    start, label = None, ""
    for i, (prefix, lab) in enumerate(parsed):
        if start is not None:
            if prefix in ("I", last) and lab == label:
                if prefix == last:
                    chunks.append((start, i + 1, label))
                    start = None
                continue
            return [], (lines[i], f"the {label} chunk opened by B-{label} at line {lines[start]} is not "
                                  f"closed by {last}-{label} before this tag")
        if prefix == single:
            chunks.append((i, i + 1, lab))
        elif prefix == "B":
            start, label = i, lab
        elif prefix != "O":
            return [], (lines[i], f"{prefix}-{lab} continues no open {lab} chunk (a chunk is "
                                  f"B-{lab} ... {last}-{lab}, or {single}-{lab} for one token)")
    if start is not None:
        return [], (lines[-1], f"the {label} chunk opened by B-{label} at line {lines[start]} is not "
                               f"closed by {last}-{label} before the sentence ends")
    return chunks, None


def _check_tags(conll: ConllFile, source: str) -> None:
    """Raise at the first tag that is not a tag of ``conll.scheme`` (of any scheme when it is ``auto``)."""
    auto = conll.scheme == "auto"
    prefixes = ("B", "I", "E", "S", "L", "U") if auto else PREFIXES[conll.scheme]
    for s in conll.sentences:
        for tag, line in zip(s.tags, s.lines):
            if _parse_tag(tag, prefixes) is None:
                what = "unknown tag" if auto else f"not a {conll.scheme} tag (--scheme {conll.scheme})"
                raise ConllError(
                    f"{source}:{line}: {tag!r} (column {conll.tag_column}): {what}. Expected {_TAG_FORMS}. "
                    f"Fix: correct the tag{'' if auto else ', or pass the scheme the file uses'}, or pass "
                    f"--tag-column if the tags are in another of the file's {conll.n_columns} columns."
                )


def _read_chunks(conll: ConllFile, source: str) -> None:
    """Fill each sentence's ``chunks`` from its (checked) tags under ``conll.scheme``; count repairs."""
    prefixes = PREFIXES[conll.scheme]
    for s in conll.sentences:
        parsed = [_parse_tag(tag, prefixes) for tag in s.tags]
        if conll.scheme in ("IOB1", "IOB2"):
            s.chunks, repaired = _iob_chunks(parsed, conll.scheme)
            if repaired and not conll.repairs:
                i = repaired[0]
                before = repr(s.tags[i - 1]) if i else "the sentence start"
                conll.first_repair = f"{source}:{s.lines[i]}: {s.tags[i]!r} after {before} read as a chunk start"
            conll.repairs += len(repaired)
            continue
        s.chunks, problem = _closed_chunks(parsed, conll.scheme, s.lines)
        if problem:
            how = "detected" if conll.scheme_detected else "--scheme"
            raise ConllError(
                f"{source}:{problem[0]}: ill-formed {conll.scheme} tags ({how}): {problem[1]}. "
                f"Sentence tags: {' '.join(s.tags)!r}. Fix: correct the tags (IOBES and BILUO are not repaired)."
            )


def read_conll(path, *, tag_column: Optional[int] = None, scheme: str = "auto") -> ConllFile:
    """Read, validate and decode the chunk tags of the CoNLL file ``path`` (see the module docstring).

    Args:
        path: the file (UTF-8).
        tag_column: 1-based column of the chunk tags (at least 2); None = the last.
        scheme: ``auto``, ``IOB1``, ``IOB2``, ``IOBES`` (``BIOES``) or ``BILUO``.

    Raises:
        FileNotFoundError: ``path`` is not a file.
        ValueError: a bad ``scheme`` or ``tag_column``.
        ConllError: undecodable or empty input, a row with another column count,
            an unknown tag or an ill-formed IOBES/BILUO sequence (``file:line``, text, fix).
    """
    path = Path(path)
    scheme = normalise_scheme(scheme)
    if tag_column is not None and tag_column < 2:
        raise ValueError(f"--tag-column {tag_column}: column 1 is the token. Fix: pass 2 or more (default: the last).")
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "not found"
        raise FileNotFoundError(f"CoNLL file {what}: {path}. Fix: pass the path of a CoNLL column file.")
    source = str(path)
    documents, has_docstart, n_columns, first = _split_rows(decode_conll_bytes(path.read_bytes(), source), source)
    if not documents:
        raise ConllError(
            f"{source} has no token rows (it is empty, or holds only blank and -DOCSTART- lines). "
            f"Fix: pass a CoNLL column file with 'token ... tag' rows."
        )
    column = n_columns if tag_column is None else tag_column
    if column > n_columns:
        raise ValueError(
            f"--tag-column {column}, but {source} has {n_columns} columns (line {first}). "
            f"Fix: pass a column from 2 to {n_columns}, or leave it out for the last."
        )
    pos = 1 if n_columns >= 3 and column != 2 else None
    sentences = [
        [ConllSentence([f[0] for _, f in rows], [f[pos] for _, f in rows] if pos else None,
                       [f[column - 1] for _, f in rows], [n for n, _ in rows]) for rows in doc]
        for doc in documents
    ]
    conll = ConllFile(path, sentences, has_docstart, n_columns, column, scheme, scheme == "auto")
    _check_tags(conll, source)
    if conll.scheme_detected:
        conll.scheme = _detect_scheme(conll.sentences, source)
    _read_chunks(conll, source)
    return conll

