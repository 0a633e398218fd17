"""Hostile files for every file reader: a table of truncated, corrupt and
empty files with the error each must raise, and a Hypothesis fuzz run.

The table covers the data loaders (IDX, `.ts`, CoNLL, word-tag and
`docs.tsv`) and the weight files of `lstmkit convert` (TF1 checkpoints,
`.keras` files and `.npz` state dicts), including files of another model.
Every message must name the file and state what was expected or what to
do.

The fuzz run mutates small real files (bit flips, truncation, inserted
junk or tokens, deleted spans) and asserts that each reader either returns
well-formed data or raises its documented error type, never another
exception. The default run uses a fixed seed and few examples per reader;
`pytest -m slow tests/test_hostile_files.py` runs many more.
"""

import contextlib
import dataclasses
import gzip
import io
import signal
from collections.abc import Callable
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from helpers import torch_state_dict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tf_keras.src.layers.rnn.legacy_cells import GRUCell as V1GRUCell

from lstmkit.convert.formats import ConversionError
from lstmkit.convert.loading import load_model
from lstmkit.convert.tf1 import read_tf1_checkpoint
from lstmkit.data import (
    DataFormatError,
    load_conll2000,
    load_mnist,
    load_treebank_pos,
    load_vowels,
    read_conll,
    read_idx,
    read_ts,
    read_word_tag,
)
from lstmkit.data.treebank import read_docs

# ---------------------------------------------------------------- builders


def idx_header(magic: int, dims: tuple[int, ...]) -> bytes:
    fields = (magic, *dims)
    return b"".join(value.to_bytes(4, "big") for value in fields)


LABELS_MAGIC, IMAGES_MAGIC = 0x801, 0x803
IDX_LABELS = idx_header(LABELS_MAGIC, (3,)) + bytes([1, 2, 3])

TS_HEADER = (
    "@problemName toy\n@timeStamps false\n@missing false\n"
    "@univariate false\n@dimensions 2\n@equalLength false\n"
    "@classLabel true a b\n@data\n"
)
CONLL_TEXT = "He PRP B-NP\nreckons VBZ B-VP\n\nThe DT B-NP\n"
WORD_TAG_TEXT = "A\tDT\nb\tNN\n\nC\tNN\n"
DOCS_TEXT = "doc\tfirst_sentence\tn_sentences\nwsj_0001\t0\t2\n"


@dataclasses.dataclass
class BadFile:
    """One hostile file and the error its reader must raise.

    `fragments` must all occur in the message, which must also name the
    file.
    """

    read: Callable
    content: bytes
    fragments: tuple[str, ...]
    error: type = DataFormatError
    name: str = "file"


def text(value: str) -> bytes:
    return value.encode("utf-8")


DATA_CASES = {
    "idx_empty": BadFile(read_idx, b"", ("the file is empty", "Download")),
    "idx_text": BadFile(
        read_idx, b"hello world\n", ("unknown magic number", "Expected")
    ),
    "idx_truncated_magic": BadFile(
        read_idx, b"\x00\x00", ("truncated at 2 bytes", "Expected")
    ),
    "idx_truncated_header": BadFile(
        read_idx,
        idx_header(IMAGES_MAGIC, (1, 28, 28))[:12],
        ("truncated at 12 bytes", "16 header bytes"),
    ),
    "idx_truncated_data": BadFile(
        read_idx, IDX_LABELS[:-1], ("needs 3 data bytes", "has 2", "Download")
    ),
    "idx_extra_data": BadFile(
        read_idx, IDX_LABELS + b"\x00", ("needs 3 data bytes", "has 4")
    ),
    # 2**31 cubed overflows int64 to 0, which once matched an empty body.
    "idx_header_overflow": BadFile(
        read_idx,
        idx_header(IMAGES_MAGIC, (2**31, 2**31, 2**31)),
        ("needs 9903520314283042199192993792 data bytes", "has 0"),
    ),
    "idx_gzip_corrupt": BadFile(
        read_idx, b"\x1f\x8b" + b"\x55" * 30, ("corrupt gzip data", "Download")
    ),
    "idx_gzip_truncated": BadFile(
        read_idx,
        gzip.compress(IDX_LABELS * 50)[:-12],
        ("corrupt gzip data", "Download"),
    ),
    "idx_gzip_empty": BadFile(
        read_idx, gzip.compress(b""), ("decompresses to 0 bytes", "Expected")
    ),
    "ts_empty": BadFile(read_ts, b"", ("empty", "Expected")),
    "ts_not_utf8": BadFile(
        read_ts, b"@data\n\xff\xfe\n", ("not UTF-8", "Expected")
    ),
    "ts_no_data_line": BadFile(
        read_ts, text(TS_HEADER.replace("@data\n", "")), ("@data",)
    ),
    "ts_truncated_line": BadFile(
        read_ts,
        text(TS_HEADER + "1,2:3,4:a\n1,2:3,"),
        ("line 10", "found 1 dimensions", "Expected 2 dimensions"),
    ),
    "ts_text_value": BadFile(
        read_ts,
        text(TS_HEADER + "1,x:3,4:a\n"),
        ("line 9", "'x'", "Expected a float"),
    ),
    "ts_nan_without_missing": BadFile(
        read_ts,
        text(TS_HEADER + "1,nan:3,4:a\n"),
        ("line 9", "'nan'", "reads as NaN", "@missing true"),
    ),
    "ts_inf": BadFile(
        read_ts,
        text(TS_HEADER + "1,2:3,-inf:a\n"),
        ("line 9", "value 2 of dimension 2", "'-inf'", "not a finite"),
    ),
    "ts_float32_overflow": BadFile(
        read_ts,
        text(TS_HEADER + "1e39,2:3,4:a\n"),
        ("line 9", "'1e39'", "not a finite float32"),
    ),
    "ts_undeclared_label": BadFile(
        read_ts, text(TS_HEADER + "1,2:3,4:z\n"), ("line 9", "'z'")
    ),
    "ts_ragged_dimensions": BadFile(
        read_ts,
        text(TS_HEADER + "1,2,3:3,4:a\n"),
        ("line 9", "dimension 2 has 2 values", "Expected"),
    ),
    "conll_empty": BadFile(read_conll, b"", ("empty",)),
    "conll_blank_lines": BadFile(
        read_conll, b"\n\n  \n", ("all lines are blank", "Expected")
    ),
    "conll_not_utf8": BadFile(
        read_conll, b"He PRP B-NP\n\xc3\x28 NN O\n", ("not UTF-8",)
    ),
    "conll_truncated_line": BadFile(
        read_conll,
        text(CONLL_TEXT + "current JJ"),
        ("line 5", "Expected", "3"),
    ),
    "conll_tabs": BadFile(
        read_conll, b"He\tPRP\tB-NP\n", ("line 1", "Expected")
    ),
    "conll_double_space": BadFile(
        read_conll,
        b"He  PRP B-NP\n",
        ("line 1", "found 4 columns", "separated by single spaces"),
    ),
    "word_tag_empty": BadFile(read_word_tag, b"", ("empty",)),
    "word_tag_spaces": BadFile(
        read_word_tag, b"A DT\n", ("line 1", "Expected")
    ),
    "word_tag_three_columns": BadFile(
        read_word_tag, b"A\tDT\tX\n", ("line 1", "Expected")
    ),
    "docs_empty": BadFile(
        read_docs, b"", ("an empty file", "Expected the header")
    ),
    "docs_bad_header": BadFile(
        read_docs, b"name\tfirst\tcount\n", ("line 1", "Expected the header")
    ),
    "docs_bad_name": BadFile(
        read_docs,
        text(DOCS_TEXT + "doc_2\t2\t1\n"),
        ("line 3", "'doc_2'", "wsj_0001"),
    ),
    "docs_negative_count": BadFile(
        read_docs,
        text(DOCS_TEXT + "wsj_0002\t2\t-1\n"),
        ("line 3", "'-1'", "at least 1"),
    ),
    "docs_duplicate": BadFile(
        read_docs,
        text(DOCS_TEXT + "wsj_0001\t2\t1\n"),
        ("line 3", "occurs twice"),
    ),
}


@pytest.mark.parametrize("name", list(DATA_CASES))
def test_data_reader_rejects_file(name, tmp_path):
    case = DATA_CASES[name]
    path = tmp_path / case.name
    path.write_bytes(case.content)

    with pytest.raises(case.error) as caught:
        case.read(path)

    message = str(caught.value)
    assert str(path) in message, f"message does not name the file: {message}"
    for fragment in case.fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"


def test_read_ts_missing_nan_allowed(tmp_path):
    """With @missing true a literal NaN reads as a missing value."""
    header = TS_HEADER.replace("@missing false", "@missing true")
    path = tmp_path / "missing.ts"
    path.write_text(header + "1,nan:?,4:a\n")

    series, labels, names = read_ts(path)

    assert np.isnan(series[0][1, 0]), f"got {series[0]}"
    assert np.isnan(series[0][0, 1]), f"got {series[0]}"
    assert labels.tolist() == [0]


# ------------------------------------------------------- weight files


def save_checkpoint(prefix: Path, build: Callable[[], None]) -> Path:
    """Runs `build` in a new graph and saves its variables with `Saver`."""
    graph = tf.Graph()
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as session:
        build()
        session.run(tf.compat.v1.global_variables_initializer())
        tf.compat.v1.train.Saver().save(session, str(prefix))
    return prefix


def build_v1_gru() -> None:
    inputs = tf.compat.v1.placeholder(tf.float32, [None, None, 3])
    tf.compat.v1.nn.dynamic_rnn(V1GRUCell(4), inputs, dtype=tf.float32)


def build_v1_lstm_variables() -> None:
    tf.compat.v1.get_variable("rnn/lstm_cell/kernel", [7, 16])
    tf.compat.v1.get_variable("rnn/lstm_cell/bias", [16])


def write_checkpoint_files(
    folder: Path, name: str, index: bytes, data: bytes
) -> Path:
    prefix = folder / name
    Path(f"{prefix}.index").write_bytes(index)
    Path(f"{prefix}.data-00000-of-00001").write_bytes(data)
    return prefix


@pytest.fixture(scope="module")
def lstm_checkpoint(tmp_path_factory) -> tuple[bytes, bytes]:
    """The `.index` and `.data` bytes of a small v1 LSTM checkpoint."""
    folder = tmp_path_factory.mktemp("lstm_checkpoint")
    prefix = save_checkpoint(folder / "model.ckpt", build_v1_lstm_variables)
    index = Path(f"{prefix}.index").read_bytes()
    data = Path(f"{prefix}.data-00000-of-00001").read_bytes()
    return index, data


def assert_conversion_error(model_format, path, *fragments):
    with pytest.raises(ConversionError) as caught:
        load_model(model_format, path, None, 1.0)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"


@pytest.mark.parametrize(
    "part, cut, reason",
    [
        ("index", 0, "too short to be an sstable"),
        ("index", 0.5, "sstable"),
        ("data", 10, "Read less bytes than requested"),
    ],
    ids=["empty_index", "half_index", "truncated_data"],
)
def test_tf1_checkpoint_corrupt(lstm_checkpoint, tmp_path, part, cut, reason):
    index, data = lstm_checkpoint
    if part == "index":
        index = index[: int(len(index) * cut)]
    else:
        data = data[:cut]
    prefix = write_checkpoint_files(tmp_path, "cut.ckpt", index, data)

    with pytest.raises(ValueError) as caught:
        read_tf1_checkpoint(prefix)
    message = str(caught.value)
    assert str(prefix) in message, message
    assert reason in message, message
    assert "truncated or corrupt" in message, message
    assert "Write the checkpoint again" in message, message

    assert_conversion_error("tf1", prefix, str(prefix), "truncated or corrupt")


def test_tf1_checkpoint_missing(tmp_path):
    prefix = tmp_path / "absent.ckpt"
    with pytest.raises(tf.errors.NotFoundError) as caught:
        read_tf1_checkpoint(prefix)
    message = caught.value.message
    assert f"No TF1 checkpoint at {prefix}" in message, message
    assert "Pass the checkpoint prefix" in message, message


@pytest.mark.filterwarnings("ignore:`tf.nn.rnn_cell.GRUCell` is deprecated")
def test_tf1_checkpoint_of_gru(tmp_path):
    prefix = save_checkpoint(tmp_path / "gru.ckpt", build_v1_gru)

    with pytest.raises(ValueError) as caught:
        read_tf1_checkpoint(prefix)
    message = str(caught.value)
    assert "rnn/lstm_cell/kernel, rnn/lstm_cell/bias not found" in message
    assert "rnn/gru_cell/gates/kernel" in message, message
    assert "Pass the cell's variable scope as prefix" in message, message

    assert_conversion_error(
        "tf1", prefix, "rnn/gru_cell/gates/kernel", "--prefix"
    )


def test_tf1_checkpoint_object_based(tmp_path):
    """A `tf.train.Checkpoint` of a Keras LSTM is not a TF1 checkpoint."""
    layer = keras.layers.LSTM(4)
    layer.build((None, None, 3))
    prefix = tf.train.Checkpoint(lstm=layer).write(str(tmp_path / "obj"))

    with pytest.raises(ValueError) as caught:
        read_tf1_checkpoint(prefix)
    message = str(caught.value)
    assert ".ATTRIBUTES/VARIABLE_VALUE" in message, message
    assert "object-based checkpoint" in message, message
    assert "from_keras_lstm" in message, message


def save_keras_model(path: Path, layer: keras.layers.Layer) -> Path:
    model = keras.Sequential([keras.Input((None, 3)), layer])
    model.save(path)
    return path


def test_keras_file_of_gru(tmp_path):
    path = save_keras_model(tmp_path / "gru.keras", keras.layers.GRU(4))
    assert_conversion_error(
        "keras", path, str(path), "contains no keras.layers.LSTM", "GRU"
    )


def test_keras_file_corrupt(tmp_path):
    """Truncated archive, then an archive whose weights file is cut."""
    import zipfile

    good = save_keras_model(tmp_path / "lstm.keras", keras.layers.LSTM(4))
    content = good.read_bytes()
    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(content[: len(content) // 2])
    assert_conversion_error(
        "keras", truncated, str(truncated), "is not a .keras model file"
    )

    cut_weights = tmp_path / "cut_weights.keras"
    with zipfile.ZipFile(good) as source, zipfile.ZipFile(
        cut_weights, "w"
    ) as target:
        for item in source.infolist():
            body = source.read(item.filename)
            if item.filename.endswith(".h5"):
                body = body[: len(body) // 2]
            target.writestr(item, body)
    assert_conversion_error(
        "keras", cut_weights, f"Keras could not load {cut_weights}"
    )


NPZ_CASES = {
    "empty_file": (lambda path: path.write_bytes(b""), "is not an .npz"),
    "text_file": (
        lambda path: path.write_text("weights"), "is not an .npz archive"
    ),
    "empty_archive": (lambda path: np.savez(path), "state dict is empty"),
    "object_array": (
        lambda path: np.savez(path, weight_ih_l0=np.array([{}], object)),
        "Object arrays cannot be loaded",
    ),
    "string_values": (
        lambda path: np.savez(
            path,
            **{
                key: value.astype(str)
                for key, value in torch_state_dict().items()
            },
        ),
        "weight_ih_l0 has dtype <U",
    ),
    "integer_values": (
        lambda path: np.savez(
            path,
            **{
                key: value.astype(np.int32)
                for key, value in torch_state_dict().items()
            },
        ),
        "weight_ih_l0 has dtype int32",
    ),
    "missing_key": (
        lambda path: np.savez(
            path,
            **{
                key: value
                for key, value in torch_state_dict().items()
                if key != "bias_hh_l0"
            },
        ),
        "Missing key(s) bias_hh_l0",
    ),
    "nan_weights": (
        lambda path: np.savez(
            path,
            **{
                **torch_state_dict(),
                "bias_hh_l0": np.full([16], np.nan, np.float32),
            },
        ),
        "16 of the 16 values of bias (layer 0) are NaN or infinite",
    ),
    # An nn.GRU state dict: 3 gate blocks, so weight_hh_l0 is [12, 4],
    # which no LSTM with weight_ih_l0 [12, 3] has.
    "gru_state_dict": (
        lambda path: np.savez(
            path,
            weight_ih_l0=np.zeros([12, 3], np.float32),
            weight_hh_l0=np.zeros([12, 4], np.float32),
            bias_ih_l0=np.zeros([12], np.float32),
            bias_hh_l0=np.zeros([12], np.float32),
        ),
        "weight_hh_l0 (12, 4) (expected (12, 3))",
    ),
}


@pytest.mark.parametrize("name", list(NPZ_CASES))
def test_npz_state_dict_rejected(name, tmp_path):
    write, fragment = NPZ_CASES[name]
    path = tmp_path / "state.npz"
    write(path)
    assert_conversion_error("torch", path, str(path), fragment)


def test_pt_state_dict_integers(tmp_path):
    torch = pytest.importorskip("torch")
    path = tmp_path / "state.pt"
    torch.save(
        {
            key: torch.from_numpy(value).to(torch.int32)
            for key, value in torch_state_dict().items()
        },
        path,
    )
    assert_conversion_error(
        "torch", path, str(path), "'weight_ih_l0' to a torch.int32 tensor",
        ".float()",
    )


# ---------------------------------------------------------------- fuzzing

# Tokens that reach deeper into the text parsers than random bytes do.
TOKENS = [
    b"\n", b"\n\n", b"\t", b" ", b":", b",", b"?", b"#", b"@data\n",
    b"@classLabel true a\n", b"@missing true\n", b"@dimensions 3\n",
    b"nan", b"inf", b"-1", b"1e39", b"99999999999999999999", b"\r\n",
    b"\x00", b"\xff", b"B-NP", b"I-VP", b"wsj_0001", b"\x1f\x8b",
]

MUTATION = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 7)),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(
        st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=16)
    ),
    st.tuples(st.just("token"), st.floats(0, 1), st.sampled_from(TOKENS)),
    st.tuples(st.just("delete"), st.floats(0, 1), st.integers(1, 64)),
)
# A list of mutations of a seed file, or a file of random bytes.
FILE_EDIT = st.one_of(
    st.lists(MUTATION, min_size=1, max_size=4),
    st.binary(max_size=200),
)


def mutate(seed: bytes, edit) -> bytes:
    """Applies a drawn `FILE_EDIT` to `seed`."""
    if isinstance(edit, bytes):
        return edit
    data = bytearray(seed)
    for kind, where, *rest in edit:
        position = min(int(where * len(data)), max(len(data) - 1, 0))
        if kind == "flip" and data:
            data[position] ^= 1 << rest[0]
        elif kind == "truncate":
            del data[int(where * len(data)):]
        elif kind in ("insert", "token"):
            data[position:position] = rest[0]
        elif kind == "delete":
            del data[position:position + rest[0]]
    return bytes(data)


@contextlib.contextmanager
def fails_if_hung(seconds: int = 120):
    """Fails the example when a reader runs for `seconds`: a hang.

    The bound is far above any reader's run time on these small files, so
    it only catches a reader that never returns.
    """

    def on_alarm(signum, frame):
        raise AssertionError(f"the reader ran for {seconds} s: it hangs")

    if not hasattr(signal, "SIGALRM"):
        yield  # No SIGALRM on Windows, so no hang check there.
        return
    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def head_lines(path: Path, count: int) -> bytes:
    with path.open(encoding="utf-8") as file:
        return "".join(next(file) for _ in range(count)).encode("utf-8")


def small_idx(path: Path, count: int) -> bytes:
    """The first `count` items of a real IDX file, with its header fixed."""
    raw = gzip.decompress(path.read_bytes())
    header_bytes = 16 if raw[3] == 3 else 8
    item_bytes = 784 if header_bytes == 16 else 1
    header = raw[:4] + count.to_bytes(4, "big") + raw[8:header_bytes]
    return header + raw[header_bytes:header_bytes + count * item_bytes]


def small_ts(path: Path, series: int) -> bytes:
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    data = next(i for i, line in enumerate(lines) if line.startswith("@data"))
    return "".join(lines[:data + 1 + series]).encode("utf-8")


@pytest.fixture(scope="module")
def seeds(shared_data) -> dict[str, bytes]:
    """Small real files: headers and first records of the shared data."""
    mnist = shared_data / "mnist"
    vowels = shared_data / "japanese-vowels"
    conll = shared_data / "conll2000"
    treebank = shared_data / "treebank-pos"
    return {
        "labels": small_idx(mnist / "t10k-labels-idx1-ubyte.gz", 20),
        "images": small_idx(mnist / "t10k-images-idx3-ubyte.gz", 2),
        "train_labels": small_idx(mnist / "train-labels-idx1-ubyte.gz", 3),
        "train_images": small_idx(mnist / "train-images-idx3-ubyte.gz", 3),
        "test_labels": small_idx(mnist / "t10k-labels-idx1-ubyte.gz", 2),
        "ts_train": small_ts(vowels / "JapaneseVowels_TRAIN.ts", 4),
        "ts_test": small_ts(vowels / "JapaneseVowels_TEST.ts", 3),
        "conll_train": head_lines(conll / "train.txt", 40),
        "conll_test": head_lines(conll / "test.txt", 30),
        # wsj_0001 to wsj_0003 hold the first 33 sentences.
        "treebank": treebank_head(treebank / "treebank_pos.txt", 33),
        "docs": head_lines(treebank / "docs.tsv", 4),
    }


def treebank_head(path: Path, sentences: int) -> bytes:
    blocks = path.read_text(encoding="utf-8").split("\n\n")
    return ("\n\n".join(blocks[:sentences]) + "\n\n").encode("utf-8")


def check_idx(array) -> None:
    assert array.dtype == np.uint8, array.dtype
    assert array.ndim in (1, 3), array.shape


def check_ts(result) -> None:
    series, labels, names = result
    assert len(series) == len(labels) > 0
    depth = series[0].shape[1]
    for values in series:
        assert values.dtype == np.float32, values.dtype
        assert values.ndim == 2, values.shape
        assert values.shape[1] == depth, values.shape
        assert values.shape[0] > 0, values.shape
    assert labels.min() >= 0, labels
    assert labels.max() < len(names), labels


def check_sentences(columns: int) -> Callable:
    def check(sentences) -> None:
        assert sentences, "no sentences"
        for sentence in sentences:
            assert sentence, "empty sentence"
            for row in sentence:
                assert len(row) == columns, row
                assert all(field for field in row), row

    return check


def check_docs(documents) -> None:
    for document in documents:
        assert document.name.startswith("wsj_"), document
        assert document.n_sentences >= 1, document


def check_examples(dataset) -> None:
    """Checks a `SequenceDataset` or `VariableLengthDataset`."""
    assert len(dataset.x_train) == len(dataset.y_train) > 0
    assert len(dataset.x_test) == len(dataset.y_test)


def check_sentences_dataset(dataset) -> None:
    """Checks a `TaggingDataset`."""
    assert dataset.train, "no training sentences"
    for sentence in dataset.train + dataset.test:
        assert len(sentence.words) == len(sentence.tags) > 0, sentence


@dataclasses.dataclass
class FuzzTarget:
    """A reader, the seed files it reads and how to check its result.

    `files` maps each file name the reader opens to a key of `seeds`. One
    drawn file is mutated; the others stay valid.
    """

    read: Callable[[Path], object]
    files: dict[str, str]
    check: Callable[[object], None]
    error: type = DataFormatError


def single(read: Callable, seed: str, check: Callable) -> FuzzTarget:
    return FuzzTarget(lambda folder: read(folder / "file"), {"file": seed},
                      check)


FUZZ_TARGETS = {
    "read_idx_labels": single(read_idx, "labels", check_idx),
    "read_idx_images": single(read_idx, "images", check_idx),
    "read_ts": single(read_ts, "ts_train", check_ts),
    "read_conll": single(read_conll, "conll_train", check_sentences(3)),
    "read_word_tag": single(read_word_tag, "treebank", check_sentences(2)),
    "read_docs": single(read_docs, "docs", check_docs),
    "load_mnist": FuzzTarget(
        load_mnist,
        {
            "train-images-idx3-ubyte": "train_images",
            "train-labels-idx1-ubyte": "train_labels",
            "t10k-images-idx3-ubyte": "images",
            "t10k-labels-idx1-ubyte": "test_labels",
        },
        check_examples,
    ),
    "load_vowels": FuzzTarget(
        load_vowels,
        {
            "JapaneseVowels_TRAIN.ts": "ts_train",
            "JapaneseVowels_TEST.ts": "ts_test",
        },
        check_examples,
    ),
    "load_conll2000": FuzzTarget(
        load_conll2000,
        {"train.txt": "conll_train", "test.txt": "conll_test"},
        check_sentences_dataset,
    ),
    "load_treebank_pos": FuzzTarget(
        load_treebank_pos,
        {"treebank_pos.txt": "treebank", "docs.tsv": "docs"},
        check_sentences_dataset,
    ),
}


def run_fuzz_example(target, seeds, folder, choice, edit) -> str:
    """Writes the target's files, one of them mutated, and reads them.

    Returns:
        "error" when the reader raised its documented error, else "read".
    """
    names = sorted(target.files)
    mutated = names[choice % len(names)]
    for name in names:
        content = seeds[target.files[name]]
        if name == mutated:
            content = mutate(content, edit)
        (folder / name).write_bytes(content)

    with fails_if_hung():
        try:
            result = target.read(folder)
        except target.error as error:
            assert str(error).strip(), "empty error message"
            return "error"
    target.check(result)
    return "read"


def fuzz_settings(max_examples: int) -> settings:
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
        ],
    )


def fuzz(target, seeds, folder, max_examples) -> set[str]:
    """Runs the fuzz loop; returns the outcomes seen."""
    outcomes = set()

    @fuzz_settings(max_examples)
    @given(choice=st.integers(0, 3), edit=FILE_EDIT)
    def run(choice, edit):
        outcomes.add(run_fuzz_example(target, seeds, folder, choice, edit))

    run()
    return outcomes


@pytest.mark.parametrize("name", list(FUZZ_TARGETS))
def test_fuzz_data_reader(name, seeds, tmp_path):
    outcomes = fuzz(FUZZ_TARGETS[name], seeds, tmp_path, max_examples=60)
    # Both outcomes show that the mutations reach past the first check.
    assert outcomes == {"read", "error"}, f"outcomes {outcomes}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(FUZZ_TARGETS))
def test_fuzz_data_reader_long(name, seeds, tmp_path):
    fuzz(FUZZ_TARGETS[name], seeds, tmp_path, max_examples=3000)


def load_weights(model_format: str, name: str) -> Callable[[Path], object]:
    return lambda folder: load_model(model_format, folder / name, None, 1.0)


def check_loaded(model) -> None:
    cell = model.first_cell
    assert cell.built, cell
    assert cell.input_depth >= 1, cell.input_depth


@pytest.fixture(scope="module")
def weight_seeds(lstm_checkpoint, tmp_path_factory) -> dict[str, bytes]:
    """A state dict as .npz, a TF1 checkpoint and a .keras LSTM file."""
    folder = tmp_path_factory.mktemp("weight_seeds")
    np.savez(folder / "state.npz", **torch_state_dict())
    keras_path = save_keras_model(folder / "lstm.keras", keras.layers.LSTM(2))
    index, data = lstm_checkpoint
    return {
        "npz": (folder / "state.npz").read_bytes(),
        "keras": keras_path.read_bytes(),
        "tf1_index": index,
        "tf1_data": data,
    }


def add_pt_seed(weight_seeds: dict[str, bytes]) -> None:
    """Adds the state dict as `torch.save` bytes, or skips without torch."""
    torch = pytest.importorskip("torch")
    buffer = io.BytesIO()
    tensors = {
        key: torch.from_numpy(value)
        for key, value in torch_state_dict().items()
    }
    torch.save(tensors, buffer)
    weight_seeds["pt"] = buffer.getvalue()


WEIGHT_FUZZ_TARGETS = {
    "npz": (
        FuzzTarget(
            load_weights("torch", "state.npz"),
            {"state.npz": "npz"},
            check_loaded,
            ConversionError,
        ),
        40,
    ),
    "tf1": (
        FuzzTarget(
            load_weights("tf1", "model.ckpt"),
            {
                "model.ckpt.index": "tf1_index",
                "model.ckpt.data-00000-of-00001": "tf1_data",
            },
            check_loaded,
            ConversionError,
        ),
        40,
    ),
    "pt": (
        FuzzTarget(
            load_weights("torch", "state.pt"),
            {"state.pt": "pt"},
            check_loaded,
            ConversionError,
        ),
        40,
    ),
    "keras": (
        FuzzTarget(
            load_weights("keras", "model.keras"),
            {"model.keras": "keras"},
            check_loaded,
            ConversionError,
        ),
        15,
    ),
}


@pytest.mark.parametrize("name", list(WEIGHT_FUZZ_TARGETS))
def test_fuzz_weight_file(name, weight_seeds, tmp_path):
    if name == "pt":
        add_pt_seed(weight_seeds)
    target, max_examples = WEIGHT_FUZZ_TARGETS[name]
    outcomes = fuzz(target, weight_seeds, tmp_path, max_examples)
    assert outcomes == {"read", "error"}, f"outcomes {outcomes}"


@pytest.mark.slow
@pytest.mark.parametrize("name", list(WEIGHT_FUZZ_TARGETS))
def test_fuzz_weight_file_long(name, weight_seeds, tmp_path):
    if name == "pt":
        add_pt_seed(weight_seeds)
    target, max_examples = WEIGHT_FUZZ_TARGETS[name]
    fuzz(target, weight_seeds, tmp_path, max_examples * 20)
