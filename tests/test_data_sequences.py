"""Tests for the variable-length loaders, the chunk scorer and batching."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from lstmkit.data import (
    PAD_ID,
    UNK_ID,
    DataFormatError,
    DataNotFoundError,
    TaggedSentence,
    TaggingDataset,
    VariableLengthDataset,
    Vocabulary,
    bucket_batches,
    chunk_f1,
    chunks,
    load_conll2000,
    load_treebank_pos,
    load_vowels,
    pad_batch,
    read_conll,
    read_ts,
    read_word_tag,
)

# A .ts header of 9 lines, so the first series is on line 10.
TS_HEADER = """\
# Two-dimensional toy data.
@problemName Toy
@timeStamps false
@missing false
@univariate false
@dimensions 2
@equalLength false
@classLabel true a b c
@data
"""
TS_SERIES = "1,2,3:4,5,6:b\n0.5:1.5:a\n"

CONLL_TEXT = (
    "He PRP B-NP\n"
    "reckons VBZ B-VP\n"
    ". . O\n"
    "\n"
    "The DT B-NP\n"
    "current JJ I-NP\n"
    "\n"
)

# Four sentences: two in wsj_0001 (train), one each in wsj_0160 (dev) and
# wsj_0180 (test).
TREEBANK_TEXT = "A\tDT\nb\tNN\n\nC\tNN\n\nD\tVB\ne\tNN\nf\t.\n\nG\tNN\n\n"
DOCS_HEADER = "doc\tfirst_sentence\tn_sentences\n"
DOCS_TEXT = DOCS_HEADER + "wsj_0001\t0\t2\nwsj_0160\t2\t1\nwsj_0180\t3\t1\n"


@pytest.fixture(autouse=True)
def no_data_env(monkeypatch):
    """Unset LSTMKIT_DATA so that only the places a test sets are searched."""
    monkeypatch.delenv("LSTMKIT_DATA", raising=False)


def shared_subfolder(shared_data: Path, name: str) -> Path:
    folder = shared_data / name
    if not folder.is_dir():
        pytest.skip(f"data folder {folder} does not exist")
    return folder


@pytest.fixture(scope="module")
def vowels(shared_data) -> VariableLengthDataset:
    return load_vowels(shared_subfolder(shared_data, "japanese-vowels"))


@pytest.fixture(scope="module")
def conll(shared_data) -> TaggingDataset:
    return load_conll2000(shared_subfolder(shared_data, "conll2000"))


@pytest.fixture(scope="module")
def treebank(shared_data) -> TaggingDataset:
    return load_treebank_pos(shared_subfolder(shared_data, "treebank-pos"))


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def write_vowels(folder: Path, test_series: str = TS_SERIES) -> Path:
    write(folder / "JapaneseVowels_TRAIN.ts", TS_HEADER + TS_SERIES)
    write(folder / "JapaneseVowels_TEST.ts", TS_HEADER + test_series)
    return folder


def write_conll(folder: Path, text: str = CONLL_TEXT) -> Path:
    write(folder / "train.txt", text)
    write(folder / "test.txt", CONLL_TEXT)
    return folder


def write_treebank(
    folder: Path, docs: str = DOCS_TEXT, text: str = TREEBANK_TEXT
) -> Path:
    write(folder / "treebank_pos.txt", text)
    write(folder / "docs.tsv", docs)
    return folder


def assert_format_error(read, path: Path, line: int | None, *fragments):
    """Check that read(path) raises DataFormatError naming file and line."""
    with pytest.raises(DataFormatError) as caught:
        read(path)

    message = str(caught.value)
    assert str(path) in message
    if line is not None:
        assert f"line {line}:" in message
    for fragment in fragments:
        assert fragment in message


def token_count(sentences: list[TaggedSentence]) -> int:
    return sum(len(sentence) for sentence in sentences)


# Real Japanese Vowels.


def test_vowels_counts(vowels):
    assert len(vowels.x_train) == 270
    assert len(vowels.x_test) == 370
    assert vowels.y_train.shape == (270,)
    assert vowels.y_test.shape == (370,)
    assert vowels.num_classes == 9
    assert vowels.num_features == 12
    assert vowels.class_names == [str(label) for label in range(1, 10)]


def test_vowels_lengths(vowels):
    train_lengths = vowels.lengths("train")
    test_lengths = vowels.lengths("test")

    assert (train_lengths.min(), train_lengths.max()) == (7, 26)
    assert (test_lengths.min(), test_lengths.max()) == (7, 29)
    assert train_lengths.dtype == np.int32


def test_vowels_dtypes_and_labels(vowels):
    assert all(x.dtype == np.float32 for x in vowels.x_train + vowels.x_test)
    assert all(x.shape[1] == 12 for x in vowels.x_train + vowels.x_test)
    assert vowels.y_train.dtype == np.int64
    assert np.bincount(vowels.y_train).tolist() == [30] * 9
    assert vowels.y_test.min() == 0
    assert vowels.y_test.max() == 8


def test_vowels_first_values(vowels):
    first = vowels.x_train[0]

    assert first[0, 0] == np.float32(1.860936)
    assert first[0, 1] == np.float32(-0.207383)
    assert first[1, 0] == np.float32(1.891651)


def test_vowels_padded(vowels):
    x, lengths = vowels.padded("test")

    assert x.shape == (370, 29, 12)
    assert x.dtype == np.float32
    assert lengths.dtype == np.int32
    assert np.array_equal(lengths, vowels.lengths("test"))
    shortest = int(np.argmin(lengths))
    assert np.array_equal(
        x[shortest, : lengths[shortest]], vowels.x_test[shortest]
    )
    assert not x[shortest, lengths[shortest] :].any()


# Real CoNLL-2000.


def test_conll_counts(conll):
    assert len(conll.train) == 8936
    assert len(conll.test) == 2012
    assert conll.dev == []
    assert token_count(conll.train) == 211727
    assert token_count(conll.test) == 47377


def test_conll_columns(conll):
    first = conll.train[0]

    assert first.words[:3] == ["Confidence", "in", "the"]
    assert first.features["pos"][:3] == ["NN", "IN", "DT"]
    assert first.tags[:3] == ["B-NP", "B-PP", "B-NP"]
    assert conll.tag_scheme == "iob2"
    assert conll.feature_names == ["pos"]
    assert conll.name == "conll2000"


def test_conll_tag_sets(conll):
    train_tags = {tag for sentence in conll.train for tag in sentence.tags}
    test_tags = {tag for sentence in conll.test for tag in sentence.tags}

    assert len(train_tags) == 22
    assert len(test_tags) == 19
    assert len(train_tags | test_tags) == 23
    assert "I-LST" in test_tags - train_tags


def test_conll_gold_scores_perfect(conll):
    gold = [sentence.tags for sentence in conll.test]

    scores = chunk_f1(gold, gold)

    assert scores["f1"] == 1.0
    assert scores["accuracy"] == 1.0
    assert scores["tokens"] == 47377
    assert scores["gold_chunks"] == scores["predicted_chunks"] == 23852


def test_read_conll_real_file(conll, shared_data):
    path = shared_subfolder(shared_data, "conll2000") / "test.txt"

    sentences = read_conll(path)

    assert len(sentences) == 2012
    assert sentences[0][0] == ("Rockwell", "NNP", "B-NP")
    assert [row[0] for row in sentences[5]] == conll.test[5].words


# Real treebank.


def test_treebank_split_counts(treebank):
    assert len(treebank.train) == 3396
    assert len(treebank.dev) == 273
    assert len(treebank.test) == 245
    assert token_count(treebank.train) == 81793
    assert token_count(treebank.dev) == 6327
    assert token_count(treebank.test) == 5964


def test_treebank_contents(treebank):
    first = treebank.train[0]
    all_sentences = treebank.train + treebank.dev + treebank.test
    tags = {tag for sentence in all_sentences for tag in sentence.tags}

    assert first.words[:2] == ["Pierre", "Vinken"]
    assert first.tags[:2] == ["NNP", "NNP"]
    assert first.features == {}
    assert treebank.tag_scheme == "pos"
    assert len(tags) == 45
    assert "-NONE-" not in tags


# Search order.


def test_vowels_env_var(tmp_path, monkeypatch):
    write_vowels(tmp_path / "env" / "japanese-vowels")
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "env"))

    dataset = load_vowels()

    assert len(dataset.x_train) == 2
    assert str(tmp_path / "env" / "japanese-vowels") in dataset.source


def test_vowels_data_dir_beats_env(tmp_path, monkeypatch):
    write_vowels(tmp_path / "env" / "japanese-vowels")
    given = write_vowels(tmp_path / "given", test_series="7:8:c\n")
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "env"))

    dataset = load_vowels(given)

    assert len(dataset.x_test) == 1
    assert str(given) in dataset.source


def test_vowels_not_found_hint(tmp_path):
    with pytest.raises(DataNotFoundError) as caught:
        load_vowels()

    message = str(caught.value)
    assert "japanese-vowels data not found" in message
    assert "LSTMKIT_DATA is not set" in message
    assert "sktime" in message


def test_conll_env_var(tmp_path, monkeypatch):
    write_conll(tmp_path / "env" / "conll2000")
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "env"))

    dataset = load_conll2000()

    assert len(dataset.train) == 2
    assert dataset.train[1].tags == ["B-NP", "I-NP"]


def test_conll_data_dir_missing_file(tmp_path, monkeypatch):
    folder = write_conll(tmp_path / "given")
    (folder / "test.txt").unlink()
    write_conll(tmp_path / "env" / "conll2000")
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "env"))

    with pytest.raises(DataNotFoundError) as caught:
        load_conll2000(folder)

    message = str(caught.value)
    assert "missing test.txt" in message
    assert "conll2000.zip" in message


def test_treebank_env_var(tmp_path, monkeypatch):
    write_treebank(tmp_path / "env" / "treebank-pos")
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "env"))

    dataset = load_treebank_pos()

    assert [len(dataset.train), len(dataset.dev), len(dataset.test)] == [
        2,
        1,
        1,
    ]
    assert dataset.dev[0].words == ["D", "e", "f"]
    assert dataset.test[0].tags == ["NN"]


def test_treebank_data_dir_beats_env(tmp_path, monkeypatch):
    write_treebank(tmp_path / "env" / "treebank-pos")
    docs = DOCS_HEADER + "wsj_0001\t0\t4\n"
    given = write_treebank(tmp_path / "given", docs=docs)
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "env"))

    dataset = load_treebank_pos(given)

    assert len(dataset.train) == 4
    assert dataset.dev == []
    assert dataset.test == []


# Malformed .ts files.


def test_read_ts_toy_file(tmp_path):
    text = TS_HEADER + "\n# a comment\n" + TS_SERIES
    path = write(tmp_path / "toy.ts", text)

    series, labels, class_names = read_ts(path)

    assert class_names == ["a", "b", "c"]
    assert labels.tolist() == [1, 0]
    assert labels.dtype == np.int64
    assert series[0].dtype == np.float32
    assert series[0].tolist() == [[1, 4], [2, 5], [3, 6]]
    assert series[1].tolist() == [[0.5, 1.5]]


def test_read_ts_empty_file(tmp_path):
    path = write(tmp_path / "empty.ts", "")
    assert_format_error(read_ts, path, None, "the file is empty")


def test_read_ts_missing_data_line(tmp_path):
    path = write(tmp_path / "no_data.ts", TS_HEADER.replace("@data\n", ""))
    assert_format_error(read_ts, path, 8, "without an @data line")


def test_read_ts_missing_header(tmp_path):
    path = write(tmp_path / "no_header.ts", "# only a comment\n@data\n1:a\n")
    assert_format_error(read_ts, path, 2, "before any header field")


def test_read_ts_series_before_data(tmp_path):
    path = write(tmp_path / "early.ts", "1,2:3,4:a\n" + TS_HEADER)
    assert_format_error(read_ts, path, 1, "found a series before @data")


def test_read_ts_missing_class_label(tmp_path):
    header = TS_HEADER.replace("@classLabel true a b c\n", "")
    path = write(tmp_path / "no_labels.ts", header + "1:2:a\n")
    assert_format_error(read_ts, path, 8, "no @classLabel field")


def test_read_ts_class_label_false(tmp_path):
    header = TS_HEADER.replace("true a b c", "false")
    path = write(tmp_path / "unlabeled.ts", header + "1:2\n")
    assert_format_error(read_ts, path, 8, "Expected @classLabel true")


def test_read_ts_wrong_dimension_count(tmp_path):
    path = write(tmp_path / "dims.ts", TS_HEADER + "1:2:a\n1,2,3:a\n")
    assert_format_error(
        read_ts, path, 11, "found 1 dimensions", "Expected 2 dimensions"
    )


def test_read_ts_ragged_dimensions(tmp_path):
    path = write(tmp_path / "ragged.ts", TS_HEADER + "1,2,3:4,5:a\n")
    assert_format_error(
        read_ts,
        path,
        10,
        "dimension 2 has 2 values but dimension 1 has 3",
    )


def test_read_ts_non_float(tmp_path):
    path = write(tmp_path / "text.ts", TS_HEADER + "1,2:3,x7:a\n")
    assert_format_error(
        read_ts, path, 10, "value 2 of dimension 2 is 'x7'", "Expected a float"
    )


def test_read_ts_empty_value(tmp_path):
    path = write(tmp_path / "gap.ts", TS_HEADER + "1,,2:3,4,5:a\n")
    assert_format_error(read_ts, path, 10, "value 2 of dimension 1 is ''")


def test_read_ts_unknown_label(tmp_path):
    path = write(tmp_path / "label.ts", TS_HEADER + "1:2:a\n3:4:d\n")
    assert_format_error(
        read_ts, path, 11, "unknown class label 'd'", "a b c"
    )


def test_read_ts_question_mark_without_missing(tmp_path):
    path = write(tmp_path / "missing.ts", TS_HEADER + "1,?:3,4:a\n")
    assert_format_error(read_ts, path, 10, "'?'", "@missing true")


def test_read_ts_missing_values_as_nan(tmp_path):
    header = TS_HEADER.replace("@missing false", "@missing true")
    path = write(tmp_path / "missing.ts", header + "1,?:3,4:a\n")

    series, _, _ = read_ts(path)

    assert np.isnan(series[0][1, 0])
    assert series[0][1, 1] == 4


def test_read_ts_header_after_data(tmp_path):
    path = write(tmp_path / "late.ts", TS_HEADER + "1:2:a\n@dimensions 2\n")
    assert_format_error(read_ts, path, 11, "@dimensions after @data")


def test_read_ts_no_series(tmp_path):
    path = write(tmp_path / "none.ts", TS_HEADER + "\n")
    assert_format_error(read_ts, path, 10, "without a series after @data")


def test_read_ts_invalid_dimensions_field(tmp_path):
    header = TS_HEADER.replace("@dimensions 2", "@dimensions two")
    path = write(tmp_path / "field.ts", header + "1:2:a\n")
    assert_format_error(read_ts, path, 6, "Expected one positive int")


def test_read_ts_bare_at_sign(tmp_path):
    path = write(tmp_path / "at.ts", "@\n" + TS_HEADER + "1:2:a\n")
    assert_format_error(read_ts, path, 1, "without a field name")


def test_read_ts_timestamps_rejected(tmp_path):
    header = TS_HEADER.replace("@timeStamps false", "@timeStamps true")
    path = write(tmp_path / "stamps.ts", header + "1:2:a\n")
    assert_format_error(read_ts, path, 3, "@timeStamps true is not supported")


def test_read_ts_equal_length_violated(tmp_path):
    header = TS_HEADER.replace("@equalLength false", "@equalLength true")
    path = write(tmp_path / "equal.ts", header + "1,2:3,4:a\n1:2:b\n")
    assert_format_error(read_ts, path, 11, "first series has 2")


def test_read_ts_series_length_violated(tmp_path):
    header = TS_HEADER.replace("@data", "@seriesLength 2\n@data")
    path = write(tmp_path / "length.ts", header + "1:2:a\n")
    assert_format_error(read_ts, path, 11, "Expected length 2")


def test_read_ts_infers_dimensions(tmp_path):
    header = TS_HEADER.replace("@dimensions 2\n", "")
    path = write(tmp_path / "infer.ts", header + "1:2:3:a\n4:5:a\n")
    assert_format_error(read_ts, path, 10, "Expected 3 dimensions")


def test_read_ts_univariate_without_dimensions(tmp_path):
    header = TS_HEADER.replace("@dimensions 2\n", "").replace(
        "@univariate false", "@univariate true"
    )
    path = write(tmp_path / "uni.ts", header + "1,2,3:c\n")

    series, labels, _ = read_ts(path)

    assert series[0].shape == (3, 1)
    assert labels.tolist() == [2]


def test_load_vowels_class_mismatch(tmp_path):
    folder = write_vowels(tmp_path / "vowels")
    test_path = folder / "JapaneseVowels_TEST.ts"
    write(test_path, TS_HEADER.replace("a b c", "a b") + "1:2:a\n")

    with pytest.raises(DataFormatError) as caught:
        load_vowels(folder)

    message = str(caught.value)
    assert "different class labels" in message
    assert str(test_path) in message


# Malformed CoNLL and word-tag files.


def test_read_conll_toy_file(tmp_path):
    text = "\n\n" + CONLL_TEXT + "\n\nlast NN O"
    path = write(tmp_path / "toy.txt", text)

    sentences = read_conll(path)

    assert len(sentences) == 3
    assert sentences[0][1] == ("reckons", "VBZ", "B-VP")
    assert sentences[2] == [("last", "NN", "O")]


def test_read_conll_crlf(tmp_path):
    path = tmp_path / "crlf.txt"
    path.write_bytes(CONLL_TEXT.replace("\n", "\r\n").encode())

    sentences = read_conll(path)

    assert sentences[1] == [("The", "DT", "B-NP"), ("current", "JJ", "I-NP")]


def test_read_conll_other_columns(tmp_path):
    path = write(tmp_path / "two.txt", "a X\nb Y\n")
    assert read_conll(path, columns=("word", "tag")) == [
        [("a", "X"), ("b", "Y")]
    ]


def test_read_conll_empty_file(tmp_path):
    path = write(tmp_path / "empty.txt", "")
    assert_format_error(read_conll, path, None, "the file is empty")


def test_read_conll_only_blank_lines(tmp_path):
    path = write(tmp_path / "blank.txt", "\n\n\n")
    assert_format_error(read_conll, path, None, "lines 1-3: all lines")


def test_read_conll_wrong_column_count(tmp_path):
    path = write(tmp_path / "cols.txt", CONLL_TEXT + "word NN\n")
    assert_format_error(
        read_conll,
        path,
        8,
        "found 2 columns",
        "Expected 3 columns (word pos chunk) separated by single spaces",
    )


def test_read_conll_double_space(tmp_path):
    path = write(tmp_path / "spaces.txt", "He  PRP B-NP\n")
    assert_format_error(read_conll, path, 1, "found 4 columns")


def test_read_conll_empty_column(tmp_path):
    path = write(tmp_path / "trailing.txt", "He PRP \n")
    assert_format_error(read_conll, path, 1, "an empty column 3")


def test_read_conll_tabs(tmp_path):
    path = write(tmp_path / "tabs.txt", "He\tPRP\tB-NP\n")
    assert_format_error(read_conll, path, 1, "found 1 columns")


def test_read_conll_not_utf8(tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("caf\xe9 NN B-NP\n".encode("latin-1"))
    assert_format_error(read_conll, path, None, "not UTF-8")


def test_load_conll_invalid_chunk_tag(tmp_path):
    folder = write_conll(tmp_path / "conll", CONLL_TEXT + "x NN E-NP\n")
    assert_format_error(
        load_conll2000,
        folder,
        8,
        "invalid chunk tag 'E-NP'",
        str(folder / "train.txt"),
    )


def test_read_word_tag_toy_file(tmp_path):
    path = write(tmp_path / "pos.txt", TREEBANK_TEXT)

    sentences = read_word_tag(path)

    assert len(sentences) == 4
    assert sentences[0] == [("A", "DT"), ("b", "NN")]


def test_read_word_tag_spaces(tmp_path):
    path = write(tmp_path / "pos.txt", "A\tDT\nb NN\n")
    assert_format_error(
        read_word_tag,
        path,
        2,
        "found 1 columns",
        "2 columns (word tag) separated by single tabs",
    )


def test_read_word_tag_empty_file(tmp_path):
    path = write(tmp_path / "pos.txt", "")
    assert_format_error(read_word_tag, path, None, "the file is empty")


# Malformed docs.tsv.


@pytest.mark.parametrize(
    ("docs", "line", "fragment"),
    [
        ("", 1, "found an empty file"),
        ("doc\tfirst\tcount\n", 1, "Expected the header"),
        (DOCS_HEADER + "wsj_0001\t0\n", 2, "found 2 columns"),
        (DOCS_HEADER + "wsj_1\t0\t4\n", 2, "invalid document name 'wsj_1'"),
        (DOCS_HEADER + "wsj_0001\t-1\t4\n", 2, "invalid first_sentence"),
        (DOCS_HEADER + "wsj_0001\t0\t0\n", 2, "invalid n_sentences '0'"),
        (
            DOCS_HEADER + "wsj_0001\t0\t2\nwsj_0001\t2\t2\n",
            3,
            "wsj_0001 occurs twice",
        ),
        (
            DOCS_HEADER + "wsj_0001\t0\t2\nwsj_0002\t3\t1\n",
            3,
            "wsj_0002 starts at sentence 3. Expected 2",
        ),
        (
            DOCS_HEADER + "wsj_0001\t0\t2\nwsj_0002\t1\t2\n",
            3,
            "wsj_0002 starts at sentence 1. Expected 2",
        ),
        (
            DOCS_HEADER + "wsj_0001\t1\t3\n",
            2,
            "wsj_0001 starts at sentence 1. Expected 0",
        ),
        (
            DOCS_HEADER + "wsj_0001\t0\t3\n",
            2,
            "the documents cover 3 sentences",
        ),
        (
            DOCS_HEADER + "wsj_0001\t0\t5\n",
            2,
            "the documents cover 5 sentences",
        ),
        (DOCS_HEADER, 1, "the documents cover 0 sentences"),
        (
            DOCS_HEADER + "wsj_0001\t0\t3\nwsj_0200\t3\t1\n",
            3,
            "wsj_0200 is in no split",
        ),
    ],
)
def test_docs_tsv_invalid(tmp_path, docs, line, fragment):
    folder = write_treebank(tmp_path / "treebank", docs=docs)
    with pytest.raises(DataFormatError) as caught:
        load_treebank_pos(folder)

    message = str(caught.value)
    assert str(folder / "docs.tsv") in message
    assert f"line {line}:" in message
    assert fragment in message


def test_docs_tsv_total_names_both_files(tmp_path):
    folder = write_treebank(tmp_path / "treebank", docs=DOCS_HEADER)

    with pytest.raises(DataFormatError) as caught:
        load_treebank_pos(folder)

    message = str(caught.value)
    assert str(folder / "treebank_pos.txt") in message
    assert "has 4" in message


# Chunk extraction and scoring.


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ([], set()),
        (["O", "O"], set()),
        (["B-NP", "I-NP", "O"], {("NP", 0, 2)}),
        (["B-NP", "B-NP"], {("NP", 0, 1), ("NP", 1, 2)}),
        (["I-NP", "I-NP"], {("NP", 0, 2)}),
        (["O", "I-NP", "I-NP"], {("NP", 1, 3)}),
        (["B-NP", "I-VP", "I-VP"], {("NP", 0, 1), ("VP", 1, 3)}),
        (["B-NP", "O", "I-NP"], {("NP", 0, 1), ("NP", 2, 3)}),
        (["B-PP", "B-NP", "I-NP"], {("PP", 0, 1), ("NP", 1, 3)}),
    ],
)
def test_chunks_cases(tags, expected):
    assert chunks(tags) == expected


@pytest.mark.parametrize("tag", ["E-NP", "B-", "NP", "b-NP", ""])
def test_chunks_invalid_tag(tag):
    with pytest.raises(ValueError, match="Invalid IOB2 tag"):
        chunks(["O", tag])


def test_chunk_f1_perfect():
    gold = [["B-NP", "I-NP", "B-VP", "O"], ["B-PP", "B-NP"]]

    scores = chunk_f1(gold, gold)

    assert scores["precision"] == 1.0
    assert scores["recall"] == 1.0
    assert scores["f1"] == 1.0
    assert scores["gold_chunks"] == 4
    assert scores["correct_chunks"] == 4
    assert scores["tokens"] == 6


def test_chunk_f1_boundary_error():
    gold = [["B-NP", "I-NP", "B-VP"]]
    predicted = [["B-NP", "O", "B-VP"]]

    scores = chunk_f1(gold, predicted)

    assert scores["gold_chunks"] == 2
    assert scores["predicted_chunks"] == 2
    assert scores["correct_chunks"] == 1
    assert scores["precision"] == 0.5
    assert scores["recall"] == 0.5
    assert scores["f1"] == 0.5
    assert scores["accuracy"] == pytest.approx(2 / 3)


def test_chunk_f1_wrong_type():
    gold = [["B-NP", "I-NP"]]
    predicted = [["B-VP", "I-VP"]]

    scores = chunk_f1(gold, predicted)

    assert scores["correct_chunks"] == 0
    assert scores["f1"] == 0.0
    assert scores["by_type"]["NP"]["recall"] == 0.0
    assert scores["by_type"]["VP"]["predicted_chunks"] == 1


def test_chunk_f1_i_after_o():
    gold = [["O", "B-NP", "I-NP"]]
    predicted = [["O", "I-NP", "I-NP"]]

    scores = chunk_f1(gold, predicted)

    assert scores["f1"] == 1.0
    assert scores["accuracy"] == pytest.approx(2 / 3)


def test_chunk_f1_empty_predictions():
    gold = [["B-NP", "I-NP", "B-VP"]]
    predicted = [["O", "O", "O"]]

    scores = chunk_f1(gold, predicted)

    assert scores["predicted_chunks"] == 0
    assert scores["precision"] == 0.0
    assert scores["recall"] == 0.0
    assert scores["f1"] == 0.0


def test_chunk_f1_zero_chunks():
    gold = [["O", "O"]]

    scores = chunk_f1(gold, gold)

    assert scores["gold_chunks"] == 0
    assert scores["f1"] == 0.0
    assert scores["accuracy"] == 1.0
    assert scores["by_type"] == {}


def test_chunk_f1_no_sentences():
    scores = chunk_f1([], [])

    assert scores["f1"] == 0.0
    assert scores["accuracy"] == 0.0
    assert scores["tokens"] == 0


def test_chunk_f1_sentence_boundary_ends_chunk():
    gold = [["B-NP"], ["B-NP"]]
    predicted = [["B-NP"], ["I-NP"]]

    assert chunk_f1(gold, predicted)["f1"] == 1.0


def test_chunk_f1_partial_scores():
    gold = [["B-NP", "I-NP", "B-VP", "B-NP"]]
    predicted = [["B-NP", "I-NP", "B-VP", "B-PP"]]

    scores = chunk_f1(gold, predicted)

    assert scores["correct_chunks"] == 2
    assert scores["precision"] == pytest.approx(2 / 3)
    assert scores["recall"] == pytest.approx(2 / 3)
    assert scores["by_type"]["NP"]["recall"] == 0.5
    assert scores["by_type"]["NP"]["precision"] == 1.0
    assert scores["by_type"]["PP"]["precision"] == 0.0


def test_chunk_f1_length_mismatch():
    with pytest.raises(ValueError, match="sentence 1 has 2 gold tags"):
        chunk_f1([["O"], ["O", "O"]], [["O"], ["O"]])


def test_chunk_f1_count_mismatch():
    with pytest.raises(ValueError, match="1 gold sentences but 2"):
        chunk_f1([["O"]], [["O"], ["O"]])


# Vocabulary.


def test_vocabulary_build_order():
    sentences = [["b", "a", "c"], ["a", "c", "d"], ["a"]]

    vocab = Vocabulary.build(sentences)

    assert vocab.tokens == ["<pad>", "<unk>", "a", "c", "b", "d"]
    assert len(vocab) == 6
    assert PAD_ID == 0
    assert UNK_ID == 1


def test_vocabulary_min_count():
    sentences = [["b", "a", "c"], ["a", "c", "d"], ["a"]]

    vocab = Vocabulary.build(sentences, min_count=2)
    ids = vocab.encode(["a", "b", "c", "zzz"])

    assert len(vocab) == 4
    assert ids.dtype == np.int32
    assert ids.tolist() == [2, UNK_ID, 3, UNK_ID]
    assert "b" not in vocab


def test_vocabulary_lowercase():
    vocab = Vocabulary.build([["The", "the", "Cat"]], lowercase=True)

    assert vocab.tokens == ["<pad>", "<unk>", "the", "cat"]
    assert vocab.encode(["THE", "cat"]).tolist() == [2, 3]
    assert "CAT" in vocab


def test_vocabulary_case_sensitive():
    vocab = Vocabulary.build([["The", "the"]])

    assert vocab.encode(["The", "the", "THE"]).tolist() == [2, 3, UNK_ID]


def test_vocabulary_encode_empty():
    ids = Vocabulary.build([["a"]]).encode([])

    assert ids.shape == (0,)
    assert ids.dtype == np.int32


def test_vocabulary_reserved_names_in_data():
    vocab = Vocabulary.build([["<pad>", "<unk>", "x"]])

    ids = vocab.encode(["<pad>", "<unk>"])

    assert PAD_ID not in ids.tolist()
    assert UNK_ID not in ids.tolist()


def test_vocabulary_round_trip():
    vocab = Vocabulary.build([["A", "b"], ["a"]], lowercase=True)

    restored = Vocabulary.from_dict(json.loads(json.dumps(vocab.to_dict())))

    assert restored.tokens == vocab.tokens
    assert restored.lowercase
    assert restored.encode(["B", "a", "q"]).tolist() == [3, 2, UNK_ID]


def test_vocabulary_decode():
    vocab = Vocabulary.build([["a", "b"]])

    assert vocab.decode([0, 1, 2, 3]) == ["<pad>", "<unk>", "a", "b"]
    with pytest.raises(ValueError, match="id 4 is out of range"):
        vocab.decode([4])


def test_vocabulary_from_dict_invalid():
    with pytest.raises(ValueError, match="missing keys lowercase"):
        Vocabulary.from_dict({"tokens": ["<pad>", "<unk>"]})
    with pytest.raises(ValueError, match="must start with"):
        Vocabulary.from_dict({"tokens": ["a"], "lowercase": False})
    with pytest.raises(ValueError, match="'a'"):
        Vocabulary.from_dict(
            {"tokens": ["<pad>", "<unk>", "a", "a"], "lowercase": False}
        )


def test_vocabulary_build_invalid():
    with pytest.raises(TypeError, match="pass a list of token lists"):
        Vocabulary.build(["a sentence"])
    with pytest.raises(ValueError, match="min_count must be at least 1"):
        Vocabulary.build([["a"]], min_count=0)


# Padding and bucketing.


def test_pad_batch_2d():
    sequences = [np.ones((2, 3), np.float32), np.ones((4, 3), np.float32)]

    padded, lengths = pad_batch(sequences)

    assert padded.shape == (2, 4, 3)
    assert padded.dtype == np.float32
    assert lengths.dtype == np.int32
    assert lengths.tolist() == [2, 4]
    assert padded[0, :2].all()
    assert not padded[0, 2:].any()


def test_pad_batch_ids_and_pad_value():
    sequences = [np.array([5, 6, 7], np.int32), np.array([], np.int32)]

    padded, lengths = pad_batch(sequences, pad_value=-1)

    assert padded.tolist() == [[5, 6, 7], [-1, -1, -1]]
    assert padded.dtype == np.int32
    assert lengths.tolist() == [3, 0]


def test_pad_batch_invalid():
    with pytest.raises(ValueError, match="sequences is empty"):
        pad_batch([])
    with pytest.raises(ValueError, match="sequences\\[1\\] has shape"):
        pad_batch([np.zeros((2, 3)), np.zeros((2, 4))])
    with pytest.raises(ValueError, match="is a scalar"):
        pad_batch([np.zeros(2), np.float32(1)])


def test_bucket_batches_cover_all():
    lengths = np.random.default_rng(1).integers(1, 50, size=103)

    batches = bucket_batches(lengths, 10, np.random.default_rng(0))
    sizes = Counter(len(batch) for batch in batches)

    assert sorted(np.concatenate(batches).tolist()) == list(range(103))
    assert sizes == {10: 10, 3: 1}
    assert all(batch.dtype == np.int64 for batch in batches)


def test_bucket_batches_deterministic():
    lengths = np.random.default_rng(1).integers(1, 50, size=200)

    first = bucket_batches(lengths, 8, np.random.default_rng(5))
    again = bucket_batches(lengths, 8, np.random.default_rng(5))
    other = bucket_batches(lengths, 8, np.random.default_rng(6))

    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert len(first) == len(again)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_bucket_batches_one_chunk_sorted():
    lengths = np.random.default_rng(2).permutation(1000)

    batches = bucket_batches(
        lengths, 10, np.random.default_rng(0), chunk_batches=100
    )
    spans = [int(np.ptp(lengths[batch])) for batch in batches]

    assert spans == [9] * 100


def test_bucket_batches_less_padding():
    lengths = np.random.default_rng(3).integers(1, 80, size=2000)
    rng = np.random.default_rng(0)

    def padding(batches):
        return sum(
            len(batch) * lengths[batch].max() - lengths[batch].sum()
            for batch in batches
        )

    shuffled = np.array_split(rng.permutation(2000), 200)
    bucketed = bucket_batches(lengths, 10, rng)

    assert padding(bucketed) < padding(shuffled) / 4


def test_bucket_batches_batch_order_shuffled():
    lengths = np.arange(1000)

    batches = bucket_batches(
        lengths, 10, np.random.default_rng(0), chunk_batches=100
    )
    first_lengths = [int(lengths[batch[0]]) for batch in batches]

    assert first_lengths != sorted(first_lengths)


def test_bucket_batches_invalid():
    rng = np.random.default_rng(0)

    assert bucket_batches([], 4, rng) == []
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        bucket_batches([1, 2], 0, rng)
    with pytest.raises(ValueError, match="lengths must be 1-D"):
        bucket_batches([[1, 2]], 2, rng)
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        bucket_batches([1, 2], 2, np.random.RandomState(0))


# Data set classes.


def make_variable_dataset(**changes) -> VariableLengthDataset:
    fields = {
        "x_train": [np.ones((3, 2), np.float32), np.ones((5, 2), np.float32)],
        "y_train": np.array([0, 1], np.int64),
        "x_test": [np.ones((4, 2), np.float32)],
        "y_test": np.array([1], np.int64),
        "num_classes": 2,
        "class_names": ["no", "yes"],
        "name": "toy",
        "source": "test",
    }
    fields.update(changes)
    return VariableLengthDataset(**fields)


def test_variable_dataset_limit_train():
    dataset = make_variable_dataset()

    limited = dataset.limit_train(1)

    assert len(limited.x_train) == 1
    assert limited.y_train.tolist() == [0]
    assert limited.x_test is dataset.x_test
    assert dataset.limit_train(None) is dataset
    assert len(dataset.limit_train(10).x_train) == 2


def test_variable_dataset_limit_invalid():
    dataset = make_variable_dataset()

    with pytest.raises(ValueError, match="at least 1"):
        dataset.limit_train(0)
    with pytest.raises(TypeError, match="must be an int or None"):
        dataset.limit_train(1.5)


def test_variable_dataset_padded_empty_test():
    dataset = make_variable_dataset(x_test=[], y_test=np.zeros(0, np.int64))

    x, lengths = dataset.padded("test")

    assert x.shape == (0, 0, 2)
    assert lengths.shape == (0,)


def test_variable_dataset_unknown_split():
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        make_variable_dataset().padded("dev")


@pytest.mark.parametrize(
    ("changes", "error", "fragment"),
    [
        (
            {"x_train": [], "y_train": np.zeros(0, np.int64)},
            ValueError,
            "x_train is empty",
        ),
        (
            {"x_test": [np.ones((4, 2), np.float64)]},
            ValueError,
            "x_test[0] must be a float32 array",
        ),
        (
            {"x_test": [np.ones((4, 3), np.float32)]},
            ValueError,
            "x_test[0] has 3 features but x_train[0] has 2",
        ),
        (
            {"x_test": [np.ones((0, 2), np.float32)]},
            ValueError,
            "with length at least 1",
        ),
        (
            {"y_test": np.array([2], np.int64)},
            ValueError,
            "labels from 2 to 2",
        ),
        (
            {"y_train": np.array([0, 1], np.int32)},
            ValueError,
            "got dtype int32",
        ),
        (
            {"y_train": np.array([0], np.int64)},
            ValueError,
            "x_train has 2 sequences but y_train has 1 labels",
        ),
        ({"class_names": ["one"]}, ValueError, "class_names has 1 names"),
        ({"x_train": np.ones((2, 3, 2))}, TypeError, "must be a list"),
    ],
)
def test_variable_dataset_invalid(changes, error, fragment):
    with pytest.raises(error) as caught:
        make_variable_dataset(**changes)
    assert fragment in str(caught.value)


def make_tagging_dataset(**changes) -> TaggingDataset:
    fields = {
        "train": [
            TaggedSentence(["a", "b"], ["X", "Y"], {"pos": ["N", "V"]}),
            TaggedSentence(["c"], ["X"], {"pos": ["N"]}),
        ],
        "dev": [],
        "test": [TaggedSentence(["d"], ["Y"], {"pos": ["V"]})],
        "name": "toy",
        "source": "test",
        "tag_scheme": "pos",
    }
    fields.update(changes)
    return TaggingDataset(**fields)


def test_tagging_dataset_limit_train():
    dataset = make_tagging_dataset()

    limited = dataset.limit_train(1)

    assert len(limited.train) == 1
    assert limited.test is dataset.test
    assert dataset.limit_train(None) is dataset


def test_tagging_dataset_invalid():
    with pytest.raises(ValueError, match="unknown tag_scheme 'bio'"):
        make_tagging_dataset(tag_scheme="bio")
    with pytest.raises(ValueError, match="train is empty"):
        make_tagging_dataset(train=[])
    with pytest.raises(ValueError, match="test\\[0\\] has features"):
        make_tagging_dataset(test=[TaggedSentence(["d"], ["Y"])])
    with pytest.raises(TypeError, match="must be a TaggedSentence"):
        make_tagging_dataset(dev=[{"words": ["a"], "tags": ["X"]}])


def test_tagged_sentence_invalid():
    with pytest.raises(ValueError, match="tags has 1 values"):
        TaggedSentence(["a", "b"], ["X"])
    with pytest.raises(ValueError, match="features\\['pos'\\] has 1"):
        TaggedSentence(["a", "b"], ["X", "Y"], {"pos": ["N"]})
    with pytest.raises(ValueError, match="words is empty"):
        TaggedSentence([], [])
