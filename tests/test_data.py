"""Tests for the data loaders against real files."""

import gzip
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from lstmkit.data import (
    DataFormatError,
    DataNotFoundError,
    SequenceDataset,
    find_data_dir,
    load_digits,
    load_mnist,
    read_idx,
)

MNIST_FILES = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
]
TRAIN_DIGIT_COUNTS = [
    5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949,
]
TEST_DIGIT_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


# Helpers that write small, valid MNIST-style files.


def idx_bytes(magic: int, dims: tuple[int, ...], data: bytes) -> bytes:
    """Return an IDX file: big-endian magic and dims, then the data."""
    header = b"".join(
        value.to_bytes(4, "big") for value in (magic, *dims)
    )
    return header + data


def image_bytes(images: np.ndarray) -> bytes:
    return idx_bytes(2051, images.shape, images.astype(np.uint8).tobytes())


def label_bytes(labels: np.ndarray) -> bytes:
    return idx_bytes(2049, labels.shape, labels.astype(np.uint8).tobytes())


def write_file(path: Path, content: bytes, gzipped: bool) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(content) if gzipped else content)
    return path


def write_fake_mnist(
    folder: Path, n_train: int, n_test: int = 3, gzipped: bool = True
) -> Path:
    """Write four MNIST IDX files with n_train and n_test examples.

    Image i has every pixel equal to i, and its label is i % 10.
    """
    suffix = ".gz" if gzipped else ""
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        indices = np.arange(count)
        images = np.broadcast_to(indices[:, None, None], (count, 28, 28))
        write_file(
            folder / f"{prefix}-images-idx3-ubyte{suffix}",
            image_bytes(images),
            gzipped,
        )
        write_file(
            folder / f"{prefix}-labels-idx1-ubyte{suffix}",
            label_bytes(indices % 10),
            gzipped,
        )
    return folder


def write_keras_npz(home: Path, n_train: int, n_test: int = 2) -> Path:
    path = home / ".keras" / "datasets" / "mnist.npz"
    path.parent.mkdir(parents=True)
    rng = np.random.default_rng(0)
    np.savez(
        path,
        x_train=rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        y_train=(np.arange(n_train) % 10).astype(np.uint8),
        x_test=rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        y_test=(np.arange(n_test) % 10).astype(np.uint8),
    )
    return path


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """Unset LSTMKIT_DATA and point HOME at an empty folder."""
    monkeypatch.delenv("LSTMKIT_DATA", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture(scope="module")
def mnist_dir(shared_data) -> Path:
    folder = shared_data / "mnist"
    if not folder.is_dir():
        pytest.skip(f"MNIST folder {folder} does not exist")
    return folder


@pytest.fixture(scope="module")
def mnist(mnist_dir) -> SequenceDataset:
    return load_mnist(mnist_dir)


# Real MNIST.


def test_mnist_shapes_and_dtypes(mnist):
    assert mnist.x_train.shape == (60000, 28, 28)
    assert mnist.y_train.shape == (60000,)
    assert mnist.x_test.shape == (10000, 28, 28)
    assert mnist.y_test.shape == (10000,)
    assert mnist.x_train.dtype == np.float32
    assert mnist.x_test.dtype == np.float32
    assert mnist.y_train.dtype == np.int64
    assert mnist.y_test.dtype == np.int64
    assert mnist.num_classes == 10
    assert mnist.name == "mnist"
    assert mnist.time_steps == 28
    assert mnist.num_features == 28


def test_mnist_label_counts(mnist):
    train_counts = np.bincount(mnist.y_train, minlength=10)
    test_counts = np.bincount(mnist.y_test, minlength=10)
    assert train_counts.tolist() == TRAIN_DIGIT_COUNTS
    assert test_counts.tolist() == TEST_DIGIT_COUNTS


def test_mnist_pixels_scaled(mnist):
    for x in (mnist.x_train, mnist.x_test):
        assert x.min() == 0.0
        assert x.max() == 1.0


def test_mnist_source_names_folder(mnist, mnist_dir):
    assert str(mnist_dir) in mnist.source
    assert "IDX" in mnist.source


def test_read_idx_real_files(mnist_dir):
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")
    assert images.shape == (10000, 28, 28)
    assert images.dtype == np.uint8
    assert labels.shape == (10000,)
    assert labels.dtype == np.uint8
    assert images.flags.writeable


# Uncompressed files and gzip detection.


def test_read_idx_uncompressed_real(mnist_dir, tmp_path):
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        gz_path = mnist_dir / f"{name}.gz"
        raw_path = tmp_path / name
        raw_path.write_bytes(gzip.decompress(gz_path.read_bytes()))

        np.testing.assert_array_equal(read_idx(raw_path), read_idx(gz_path))


def test_load_mnist_uncompressed_files(tmp_path):
    folder = write_fake_mnist(tmp_path / "raw", n_train=7, gzipped=False)

    dataset = load_mnist(folder)

    assert dataset.x_train.shape == (7, 28, 28)
    assert dataset.x_test.shape == (3, 28, 28)
    assert dataset.y_train.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert dataset.x_train[6, 0, 0] == np.float32(6 / 255)


def test_read_idx_detects_gzip_by_content(tmp_path):
    labels = np.array([3, 1, 4], dtype=np.uint8)
    gz_no_suffix = write_file(tmp_path / "labels", label_bytes(labels), True)
    raw_gz_suffix = write_file(
        tmp_path / "labels.gz", label_bytes(labels), False
    )

    assert read_idx(gz_no_suffix).tolist() == [3, 1, 4]
    assert read_idx(raw_gz_suffix).tolist() == [3, 1, 4]


# Search order.


def test_data_dir_beats_env_var(tmp_path, monkeypatch):
    given = write_fake_mnist(tmp_path / "given", n_train=2)
    write_fake_mnist(tmp_path / "env" / "mnist", n_train=3)
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "env"))

    dataset = load_mnist(given)

    assert len(dataset.x_train) == 2
    assert str(given) in dataset.source


def test_env_var_used_without_data_dir(tmp_path, monkeypatch):
    env_folder = write_fake_mnist(tmp_path / "env" / "mnist", n_train=3)
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "env"))

    dataset = load_mnist()

    assert len(dataset.x_train) == 3
    assert str(env_folder) in dataset.source


def test_env_var_beats_keras_cache(tmp_path, monkeypatch, isolated_env):
    write_fake_mnist(tmp_path / "env" / "mnist", n_train=3)
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "env"))
    write_keras_npz(isolated_env, n_train=4)

    assert len(load_mnist().x_train) == 3


def test_keras_cache_used_last(isolated_env):
    npz_path = write_keras_npz(isolated_env, n_train=4, n_test=2)

    dataset = load_mnist()

    assert dataset.x_train.shape == (4, 28, 28)
    assert dataset.x_test.shape == (2, 28, 28)
    assert dataset.x_train.dtype == np.float32
    assert dataset.y_train.dtype == np.int64
    assert dataset.y_train.tolist() == [0, 1, 2, 3]
    assert dataset.x_train.max() <= 1.0
    assert str(npz_path) in dataset.source


def test_incomplete_env_dir_falls_back(tmp_path, monkeypatch, isolated_env):
    env_folder = write_fake_mnist(tmp_path / "env" / "mnist", n_train=3)
    (env_folder / "t10k-labels-idx1-ubyte.gz").unlink()
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "env"))
    write_keras_npz(isolated_env, n_train=4)

    assert len(load_mnist().x_train) == 4


def test_nothing_found_lists_places(isolated_env):
    with pytest.raises(DataNotFoundError) as caught:
        load_mnist()

    message = str(caught.value)
    assert "$LSTMKIT_DATA/mnist: LSTMKIT_DATA is not set" in message
    keras_path = isolated_env / ".keras" / "datasets" / "mnist.npz"
    assert f"Keras cache {keras_path}: file does not exist" in message
    for name in MNIST_FILES:
        assert name in message
    assert "--data-dir" in message
    assert "$LSTMKIT_DATA" in message
    assert len(caught.value.searched) == 2


def test_nothing_found_names_env_dir_files(tmp_path, monkeypatch):
    env_folder = write_fake_mnist(tmp_path / "env" / "mnist", n_train=3)
    (env_folder / "train-images-idx3-ubyte.gz").unlink()
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "env"))

    with pytest.raises(DataNotFoundError) as caught:
        load_mnist()

    searched = caught.value.searched
    assert len(searched) == 2
    assert str(env_folder) in searched[0]
    assert "missing train-images-idx3-ubyte.gz" in searched[0]
    assert "Keras cache" in searched[1]


def test_nothing_found_env_dir_absent(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "empty"))

    with pytest.raises(DataNotFoundError) as caught:
        load_mnist()

    first = caught.value.searched[0]
    assert str(tmp_path / "empty" / "mnist") in first
    assert "folder does not exist" in first


def test_data_dir_missing_file_raises(tmp_path, monkeypatch, isolated_env):
    given = write_fake_mnist(tmp_path / "given", n_train=2)
    (given / "t10k-images-idx3-ubyte.gz").unlink()
    write_fake_mnist(tmp_path / "env" / "mnist", n_train=3)
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path / "env"))
    write_keras_npz(isolated_env, n_train=4)

    with pytest.raises(DataNotFoundError) as caught:
        load_mnist(given)

    message = str(caught.value)
    assert str(given) in message
    assert "missing t10k-images-idx3-ubyte.gz" in message
    first_line = message.splitlines()[0]
    assert first_line.endswith("missing t10k-images-idx3-ubyte.gz.")


def test_data_dir_absent_raises(tmp_path):
    with pytest.raises(DataNotFoundError, match="folder does not exist"):
        load_mnist(tmp_path / "nowhere")


def test_not_found_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_mnist(tmp_path / "nowhere")


def test_find_data_dir_uses_hint():
    with pytest.raises(DataNotFoundError) as caught:
        find_data_dir("conll2000", ["train.txt"], hint="Get train.txt here.")

    message = str(caught.value)
    assert "conll2000 data not found" in message
    assert "Get train.txt here." in message
    assert "'conll2000' subfolder" in message


def test_find_data_dir_default_hint(tmp_path):
    with pytest.raises(DataNotFoundError, match="needs these files: a, b"):
        find_data_dir("example", ["a", "b"], data_dir=tmp_path)


def test_find_data_dir_accepts_uncompressed(tmp_path):
    (tmp_path / "a.txt").write_text("x")

    assert find_data_dir("example", ["a.txt.gz"], data_dir=tmp_path) == (
        tmp_path
    )


def test_find_data_dir_env_subfolder(tmp_path, monkeypatch):
    (tmp_path / "example").mkdir()
    (tmp_path / "example" / "a").write_text("x")
    monkeypatch.setenv("LSTMKIT_DATA", str(tmp_path))

    assert find_data_dir("example", ["a"]) == tmp_path / "example"


# Malformed files.


def assert_format_error(path: Path, *fragments: str) -> None:
    with pytest.raises(DataFormatError) as caught:
        read_idx(path)

    message = str(caught.value)
    assert str(path) in message
    for fragment in fragments:
        assert fragment in message


def test_read_idx_empty_file(tmp_path):
    path = write_file(tmp_path / "empty", b"", gzipped=False)
    assert_format_error(path, "the file is empty")


def test_read_idx_empty_gzip(tmp_path):
    path = write_file(tmp_path / "empty.gz", b"", gzipped=True)
    assert_format_error(path, "decompresses to 0 bytes")


def test_read_idx_truncated_magic(tmp_path):
    path = write_file(tmp_path / "short", b"\x00\x00\x08", gzipped=False)
    assert_format_error(path, "truncated at 3 bytes")


def test_read_idx_truncated_header(tmp_path):
    content = idx_bytes(2051, (5, 28, 28), b"")[:10]
    path = write_file(tmp_path / "images.gz", content, gzipped=True)
    assert_format_error(path, "truncated at 10 bytes", "16 header bytes")


def test_read_idx_bad_magic(tmp_path):
    content = idx_bytes(0x12345678, (1,), b"\x00")
    path = write_file(tmp_path / "bad", content, gzipped=False)
    assert_format_error(
        path,
        "0x12345678 (305419896)",
        "0x00000803 (2051",
        "0x00000801 (2049",
    )


def test_read_idx_truncated_data(tmp_path):
    images = np.zeros((5, 28, 28), dtype=np.uint8)
    content = image_bytes(images)[:-100]
    path = write_file(tmp_path / "images.gz", content, gzipped=True)
    assert_format_error(path, "needs 3920 data bytes", "has 3820")


def test_read_idx_extra_data(tmp_path):
    content = label_bytes(np.arange(4)) + b"\x00"
    path = write_file(tmp_path / "labels", content, gzipped=False)
    assert_format_error(path, "needs 4 data bytes", "has 5")


def test_read_idx_corrupt_gzip(tmp_path):
    path = write_file(
        tmp_path / "garbage.gz", b"\x1f\x8b" + b"\x55" * 40, gzipped=False
    )
    assert_format_error(path, "corrupt gzip data")


def test_read_idx_truncated_gzip(tmp_path):
    content = gzip.compress(label_bytes(np.arange(1000) % 10))
    path = write_file(tmp_path / "cut.gz", content[:-20], gzipped=False)
    assert_format_error(path, "corrupt gzip data")


def test_load_mnist_count_mismatch(tmp_path):
    folder = write_fake_mnist(tmp_path / "mnist", n_train=5)
    labels_path = folder / "train-labels-idx1-ubyte.gz"
    write_file(labels_path, label_bytes(np.arange(4)), gzipped=True)

    with pytest.raises(DataFormatError) as caught:
        load_mnist(folder)

    message = str(caught.value)
    assert str(folder / "train-images-idx3-ubyte.gz") in message
    assert str(labels_path) in message
    assert "5 images" in message
    assert "4 labels" in message


def test_load_mnist_swapped_files(tmp_path):
    folder = write_fake_mnist(tmp_path / "mnist", n_train=5)
    images_path = folder / "t10k-images-idx3-ubyte.gz"
    labels_path = folder / "t10k-labels-idx1-ubyte.gz"
    shutil.copy(labels_path, images_path)

    with pytest.raises(DataFormatError, match="Expected \\[count, 28, 28\\]"):
        load_mnist(folder)


def test_load_mnist_bad_file_names_it(tmp_path):
    folder = write_fake_mnist(tmp_path / "mnist", n_train=5)
    bad_path = folder / "train-labels-idx1-ubyte.gz"
    bad_path.write_bytes(b"")

    with pytest.raises(DataFormatError, match=re.escape(str(bad_path))):
        load_mnist(folder)


def test_keras_cache_missing_key(isolated_env):
    path = isolated_env / ".keras" / "datasets" / "mnist.npz"
    path.parent.mkdir(parents=True)
    np.savez(path, x_train=np.zeros((1, 28, 28), dtype=np.uint8))

    with pytest.raises(DataFormatError) as caught:
        load_mnist()

    message = str(caught.value)
    assert str(path) in message
    assert "missing arrays y_train, x_test, y_test" in message


def test_keras_cache_not_npz(isolated_env):
    path = isolated_env / ".keras" / "datasets" / "mnist.npz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a zip archive")

    with pytest.raises(DataFormatError, match="cannot read it as a .npz"):
        load_mnist()


# Digits.


def test_digits_split_sizes():
    digits = load_digits()

    assert digits.x_train.shape == (1437, 8, 8)
    assert digits.x_test.shape == (360, 8, 8)
    assert digits.y_train.shape == (1437,)
    assert digits.y_test.shape == (360,)
    assert digits.x_train.dtype == np.float32
    assert digits.y_train.dtype == np.int64
    assert digits.num_classes == 10
    assert digits.x_train.min() >= 0.0
    assert digits.x_train.max() == 1.0


def test_digits_split_stratified():
    digits = load_digits()
    train_counts = np.bincount(digits.y_train, minlength=10)
    test_counts = np.bincount(digits.y_test, minlength=10)

    for digit in range(10):
        total = train_counts[digit] + test_counts[digit]
        expected_test = 0.2 * total
        assert abs(test_counts[digit] - expected_test) <= 1, digit


def test_digits_same_seed_same_split():
    first = load_digits(seed=3)
    second = load_digits(seed=3)

    np.testing.assert_array_equal(first.x_train, second.x_train)
    np.testing.assert_array_equal(first.y_test, second.y_test)


def test_digits_seeds_differ():
    first = load_digits(seed=0)
    second = load_digits(seed=1)

    assert not np.array_equal(first.x_train, second.x_train)
    assert "seed 1" in second.source


# SequenceDataset.


def small_dataset(n_train: int = 5, n_test: int = 2) -> SequenceDataset:
    return SequenceDataset(
        x_train=np.zeros((n_train, 4, 3), dtype=np.float32),
        y_train=np.arange(n_train, dtype=np.int64) % 2,
        x_test=np.ones((n_test, 4, 3), dtype=np.float32),
        y_test=np.zeros(n_test, dtype=np.int64),
        num_classes=2,
        name="small",
        source="test arrays",
    )


def test_limit_train_caps_train_only():
    dataset = small_dataset()

    limited = dataset.limit_train(3)

    assert limited.x_train.shape == (3, 4, 3)
    assert limited.y_train.tolist() == [0, 1, 0]
    assert limited.x_test is dataset.x_test
    assert limited.y_test is dataset.y_test
    assert len(dataset.x_train) == 5


def test_limit_train_none_and_large():
    dataset = small_dataset()

    assert dataset.limit_train(None) is dataset
    assert len(dataset.limit_train(100).x_train) == 5


def test_limit_train_rejects_zero():
    with pytest.raises(ValueError, match="got 0"):
        small_dataset().limit_train(0)


def test_limit_train_rejects_float():
    with pytest.raises(TypeError, match="got 2.5"):
        small_dataset().limit_train(2.5)


def test_dataset_is_frozen():
    dataset = small_dataset()
    with pytest.raises(AttributeError):
        dataset.name = "other"


def test_dataset_rejects_wrong_dtype():
    dataset = small_dataset()
    with pytest.raises(ValueError, match="x_train must be a float32 array"):
        SequenceDataset(
            x_train=dataset.x_train.astype(np.float64),
            y_train=dataset.y_train,
            x_test=dataset.x_test,
            y_test=dataset.y_test,
            num_classes=2,
            name="small",
            source="test arrays",
        )


def test_dataset_rejects_count_mismatch():
    dataset = small_dataset()
    with pytest.raises(ValueError, match="5 examples but y_train has 4"):
        SequenceDataset(
            x_train=dataset.x_train,
            y_train=dataset.y_train[:4],
            x_test=dataset.x_test,
            y_test=dataset.y_test,
            num_classes=2,
            name="small",
            source="test arrays",
        )


def test_dataset_rejects_label_range():
    dataset = small_dataset()
    with pytest.raises(ValueError, match="labels from 0 to 1"):
        SequenceDataset(
            x_train=dataset.x_train,
            y_train=dataset.y_train,
            x_test=dataset.x_test,
            y_test=dataset.y_test,
            num_classes=1,
            name="small",
            source="test arrays",
        )


def test_dataset_rejects_shape_mismatch():
    dataset = small_dataset()
    with pytest.raises(ValueError, match="same sequence shape"):
        SequenceDataset(
            x_train=dataset.x_train,
            y_train=dataset.y_train,
            x_test=np.ones((2, 5, 3), dtype=np.float32),
            y_test=dataset.y_test,
            num_classes=2,
            name="small",
            source="test arrays",
        )
