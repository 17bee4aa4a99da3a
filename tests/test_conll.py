"""The CoNLL column-file reader: layouts, tag schemes, repairs and the errors (file:line, text, fix)."""
import gzip

import pytest

from spacy_ldnet.conll import ConllError, normalise_scheme, read_conll

# One annotation (two adjacent LOC entities, a one-token PER, a three-token ORG
# whose label holds a hyphen, a one-token LOC at the sentence end) in the four schemes.
WORDS = "Paris Berlin and Ann met New York Times-Co staff in Rome".split()
TAGS = {
    "IOB1": "I-LOC B-LOC O I-PER O I-WORK-OF-ART I-WORK-OF-ART I-WORK-OF-ART O O I-LOC",
    "IOB2": "B-LOC B-LOC O B-PER O B-WORK-OF-ART I-WORK-OF-ART I-WORK-OF-ART O O B-LOC",
    "IOBES": "S-LOC S-LOC O S-PER O B-WORK-OF-ART I-WORK-OF-ART E-WORK-OF-ART O O S-LOC",
    "BILUO": "U-LOC U-LOC O U-PER O B-WORK-OF-ART I-WORK-OF-ART L-WORK-OF-ART O O U-LOC",
}
CHUNKS = [(0, 1, "LOC"), (1, 2, "LOC"), (3, 4, "PER"), (5, 8, "WORK-OF-ART"), (10, 11, "LOC")]


def _write(tmp_path, text, name="in.conll"):
    path = tmp_path / name
    path.write_text(text, encoding="utf8")
    return path


def _file(tags, sep=" "):
    return "\n".join(f"{w}{sep}{t}" for w, t in zip(WORDS, tags.split())) + "\n"


@pytest.mark.parametrize("scheme", sorted(TAGS))
def test_every_scheme_gives_the_same_chunks(tmp_path, scheme):
    path = _write(tmp_path, _file(TAGS[scheme]) + "\n" + _file(TAGS[scheme]))
    conll = read_conll(path)
    assert conll.scheme == scheme and conll.scheme_detected and conll.repairs == 0
    assert [s.chunks for s in conll.sentences] == [CHUNKS, CHUNKS]
    assert conll.sentences[0].words == WORDS
    explicit = read_conll(path, scheme=scheme.lower())
    assert not explicit.scheme_detected and [s.chunks for s in explicit.sentences] == [CHUNKS, CHUNKS]


def test_scheme_names():
    assert normalise_scheme("bioes") == "IOBES" and normalise_scheme("BILOU") == "BILUO"
    assert normalise_scheme("Auto") == "auto" and normalise_scheme("iob2") == "IOB2"
    with pytest.raises(ValueError, match="--scheme 'BIO'.*IOB1, IOB2"):
        normalise_scheme("BIO")


def test_iob_repairs_are_counted_and_located(tmp_path):
    # IOB2 with one stray I-PER after O (line 4): read as a start, as conlleval does
    path = _write(tmp_path, "a B-LOC\nb I-LOC\nc O\nd I-PER\ne B-ORG\n")
    conll = read_conll(path)
    assert conll.scheme == "IOB2" and conll.repairs == 1
    assert conll.sentences[0].chunks == [(0, 2, "LOC"), (3, 4, "PER"), (4, 5, "ORG")]
    assert conll.first_repair == f"{path}:4: 'I-PER' after 'O' read as a chunk start"
    # the same file as IOB1: no I-X is ill-formed there, but B-LOC and B-ORG (not after LOC/ORG) are
    as_iob1 = read_conll(path, scheme="IOB1")
    assert as_iob1.repairs == 2 and as_iob1.first_repair.startswith(f"{path}:1: 'B-LOC' after the sentence start")
    assert as_iob1.sentences[0].chunks == conll.sentences[0].chunks
    # IOB1 (more chunks opened by I- than by B-) detected, its B-X after X is well formed
    iob1 = read_conll(_write(tmp_path, _file(TAGS["IOB1"]), "iob1.conll"))
    assert (iob1.scheme, iob1.repairs) == ("IOB1", 0)


@pytest.mark.parametrize("tag", ["FOO", "B-", "b-LOC", "O-LOC", "BLOC", "-"])
def test_unknown_tag_is_an_error(tmp_path, tag):
    path = _write(tmp_path, f"x NN O B-LOC\ny NN O {tag}\n")
    with pytest.raises(ConllError) as err:
        read_conll(path)
    assert f"{path}:2: {tag!r} (column 4): unknown tag" in str(err.value)
    assert "--tag-column" in str(err.value) and "Fix" in str(err.value)


def test_tag_of_another_scheme_is_an_error_with_explicit_scheme(tmp_path):
    path = _write(tmp_path, "x B-LOC\ny E-LOC\n\nz S-PER\n")
    assert read_conll(path).sentences[1].chunks == [(0, 1, "PER")]
    with pytest.raises(ConllError, match=r"in.conll:2: 'E-LOC' \(column 2\): not a IOB2 tag \(--scheme IOB2\)"):
        read_conll(path, scheme="IOB2")
    mixed = _write(tmp_path, "x U-LOC\n\ny S-PER\n", "mixed.conll")
    with pytest.raises(ConllError, match=r"mixed.conll:1: tag 'U-LOC' is BILUO, but line 3 has the IOBES tag 'S-PER'"):
        read_conll(mixed)


@pytest.mark.parametrize("tags, line, problem", [
    ("B-LOC O", 2, "the LOC chunk opened by B-LOC at line 1 is not closed by E-LOC before this tag"),
    ("O I-LOC E-LOC", 2, "I-LOC continues no open LOC chunk"),
    ("B-LOC E-PER", 2, "not closed by E-LOC before this tag"),
    ("B-LOC S-PER", 2, "not closed by E-LOC before this tag"),
    ("O E-LOC", 2, "E-LOC continues no open LOC chunk"),
    ("B-LOC I-LOC", 2, "not closed by E-LOC before the sentence ends"),
])
def test_ill_formed_iobes_is_an_error(tmp_path, tags, line, problem):
    text = "".join(f"w{i} {t}\n" for i, t in enumerate(tags.split())) + "\nz S-LOC\n"
    path = _write(tmp_path, text)
    with pytest.raises(ConllError) as err:
        read_conll(path)
    assert str(err.value).startswith(f"{path}:{line}: ill-formed IOBES tags (detected): ")
    assert problem in str(err.value) and f"Sentence tags: {tags!r}" in str(err.value)


def test_ill_formed_biluo_is_an_error(tmp_path):
    path = _write(tmp_path, "a B-LOC\nb U-LOC\n")
    with pytest.raises(ConllError, match=r"in.conll:2: ill-formed BILUO tags.*not closed by L-LOC"):
        read_conll(path)


def test_rows_with_another_column_count_are_an_error(tmp_path):
    path = _write(tmp_path, "EU NNP B-NP B-ORG\nrejects VBZ O\n")
    with pytest.raises(ConllError) as err:
        read_conll(path)
    assert f"{path}:2: 3 columns in 'rejects VBZ O', but the file's rows have 4 (first token row, line 1)" in str(
        err.value
    )
    one = _write(tmp_path, "\n\nEU\nrejects\n", "one.conll")
    with pytest.raises(ConllError, match=r"one.conll:3: one column \('EU'\)"):
        read_conll(one)


@pytest.mark.parametrize("separator", ["\t", " ", "\r", "   \t ", "\u00a0", "\u3000"])
def test_whitespace_only_lines_separate_sentences(tmp_path, separator):
    path = _write(tmp_path, f"a B-LOC\nb O\n{separator}\nc O\nd I-LOC\n{separator}\n{separator}\ne O\n")
    conll = read_conll(path)
    assert [s.words for s in conll.sentences] == [["a", "b"], ["c", "d"], ["e"]]
    assert [s.lines for s in conll.sentences] == [[1, 2], [4, 5], [8]]


def test_tab_and_space_two_column_files_and_crlf_read_the_same(tmp_path):
    spaces = read_conll(_write(tmp_path, _file(TAGS["IOB2"]), "spaces.conll"))
    tabs = read_conll(_write(tmp_path, _file(TAGS["IOB2"], "\t"), "tabs.conll"))
    crlf = _write(tmp_path, "", "crlf.conll")
    crlf.write_bytes(_file(TAGS["IOB2"], "\t").replace("\n", "\r\n").encode())
    for conll in (tabs, read_conll(crlf)):
        assert [(s.words, s.tags, s.chunks) for s in conll.sentences] == [
            (s.words, s.tags, s.chunks) for s in spaces.sentences
        ]
        assert conll.n_columns == 2 and conll.sentences[0].pos is None


def test_tag_column_and_pos(tmp_path):
    path = _write(tmp_path, "EU NNP B-NP I-ORG\nrejects VBZ B-VP O\nGerman JJ B-NP I-MISC\ncall NN I-NP O\n")
    ner = read_conll(path)
    assert ner.tag_column == 4 and ner.sentences[0].chunks == [(0, 1, "ORG"), (2, 3, "MISC")]
    assert ner.sentences[0].pos == ["NNP", "VBZ", "JJ", "NN"]
    chunks = read_conll(path, tag_column=3)
    assert chunks.tag_column == 3 and chunks.scheme == "IOB2"
    assert chunks.sentences[0].chunks == [(0, 1, "NP"), (1, 2, "VP"), (2, 4, "NP")]
    tag_second = read_conll(_write(tmp_path, "EU B-ORG NNP\nrejects O VBZ\n", "second.conll"), tag_column=2)
    assert tag_second.sentences[0].chunks == [(0, 1, "ORG")] and tag_second.sentences[0].pos is None
    with pytest.raises(ConllError, match=r"in.conll:1: 'NNP' \(column 2\): unknown tag"):
        read_conll(path, tag_column=2)
    with pytest.raises(ValueError, match="--tag-column 5, but .*in.conll has 4 columns"):
        read_conll(path, tag_column=5)
    with pytest.raises(ValueError, match="--tag-column 1: column 1 is the token"):
        read_conll(path, tag_column=1)


def test_docstart_lines_of_any_column_count_split_documents(tmp_path):
    text = (
        "a O\n-DOCSTART- -X- O O\n\nb I-LOC\n\nc O\n-DOCSTART-\n-DOCSTART- O\n\n"
        "-DOCSTARTED I-MISC\n-DOCSTART- -X- -X- O\nd O\n"
    )
    conll = read_conll(_write(tmp_path, text))
    assert conll.has_docstart
    assert [[s.words for s in doc] for doc in conll.documents] == [[["a"]], [["b"], ["c"]], [["-DOCSTARTED"]], [["d"]]]
    assert not read_conll(_write(tmp_path, "a O\n\nb O\n", "nodoc.conll")).has_docstart


@pytest.mark.parametrize("text", ["", "\n\n", " \t\n", "-DOCSTART- -X- O O\n\n-DOCSTART- O\n"])
def test_no_token_rows_is_an_error(tmp_path, text):
    with pytest.raises(ConllError, match="in.conll has no token rows"):
        read_conll(_write(tmp_path, text))


@pytest.mark.parametrize("data, message", [
    ("a O\nb B-LOC\n".encode("utf-16"), "is UTF-16 text.*iconv -f UTF-16 -t UTF-8"),
    ("a O\nb B-LOC\n".encode("utf-16-le"), "is UTF-16 text.*iconv -f UTF-16 -t UTF-8"),
    (
        "a O\nb B-LOC\nM\u00fcller I-PER\n".encode("latin-1"),
        r":3: b'\\xfc' in 'M\\\\xfcller I-PER' is not UTF-8.*iconv -f LATIN1",
    ),
    (gzip.compress(b"a O\n"), "is gzip-compressed.*gunzip"),
    (b"a O\n\x7fELF\x02\x01\x00\x00\x00\x00\x00\x00\x00", r":2: a NUL byte; this is a binary file"),
])
def test_undecodable_input_names_the_file_and_the_fix(tmp_path, data, message):
    path = tmp_path / "in.conll"
    path.write_bytes(data)
    with pytest.raises(ConllError, match=message) as err:
        read_conll(path)
    assert str(path) in str(err.value)


def test_utf8_byte_order_mark_is_dropped(tmp_path):
    path = tmp_path / "bom.conll"
    path.write_bytes("\ufeffM\u00fcller B-PER\n".encode("utf-8"))
    assert read_conll(path).sentences[0].words == ["M\u00fcller"]


def test_missing_input(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        read_conll(tmp_path / "missing.conll")
    with pytest.raises(FileNotFoundError, match="is a folder"):
        read_conll(tmp_path)
