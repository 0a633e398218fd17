"""MNIST digits as sequences: each 28x28 image is 28 time steps of 28 pixels.

``load_mnist`` reads the four original IDX files (gzipped or not) or, as a
last resort, the ``mnist.npz`` file that ``keras.datasets.mnist.load_data``
stores in ``~/.keras/datasets``.
"""

from __future__ import annotations

import gzip
import logging
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .dataset import SequenceDataset
from .locate import (
    DataFormatError,
    DataNotFoundError,
    find_data_dir,
    not_found_error,
    resolve_file,
)

logger = logging.getLogger(__name__)

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801

# Header size in bytes for each magic number: the magic and the item count,
# plus rows and columns for images. Every field is a big-endian int32.
_IDX_HEADER_BYTES = {IDX_IMAGES_MAGIC: 16, IDX_LABELS_MAGIC: 8}
_IDX_KIND = {IDX_IMAGES_MAGIC: "images", IDX_LABELS_MAGIC: "labels"}
_GZIP_MAGIC = b"\x1f\x8b"

MNIST_TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
MNIST_TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
MNIST_TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
MNIST_TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
MNIST_FILES = [
    MNIST_TRAIN_IMAGES,
    MNIST_TRAIN_LABELS,
    MNIST_TEST_IMAGES,
    MNIST_TEST_LABELS,
]
MNIST_IMAGE_SIZE = 28
MNIST_NUM_CLASSES = 10
_NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")

MNIST_HINT = (
    "Get the four original MNIST IDX files (gzipped or not): "
    + ", ".join(MNIST_FILES)
    + ". Or run keras.datasets.mnist.load_data() once on a machine with "
    "internet access, which downloads ~/.keras/datasets/mnist.npz."
)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file of uint8 images or labels.

    The file may be gzipped or not. Gzip is detected by its magic bytes, not
    by the file name. The header is big-endian: magic 2051 (0x00000803)
    followed by count, rows and cols for images, or magic 2049 (0x00000801)
    followed by count for labels. The data follows as uint8.

    Args:
        path: Path of the IDX file.

    Returns:
        uint8 array of shape ``[count, rows, cols]`` for images or
        ``[count]`` for labels.

    Raises:
        DataFormatError: The file is empty, not valid gzip, has a truncated
            header or an unknown magic number, or its data size does not
            match the header. The message names the file.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    data = _read_maybe_gzipped(path)

    magic, header_bytes = _read_idx_magic(path, data)
    dims = _read_idx_dims(path, data, magic, header_bytes)

    # math.prod on Python ints cannot overflow, unlike np.prod in int64: a
    # corrupt header can claim up to (2**32 - 1) ** 3 bytes.
    expected_bytes = math.prod(dims)
    actual_bytes = len(data) - header_bytes
    if actual_bytes != expected_bytes:
        shape = " x ".join(str(dim) for dim in dims)
        raise DataFormatError(
            f"Invalid IDX file {path}: the header ({_IDX_KIND[magic]}, "
            f"shape {shape}) needs {expected_bytes} data bytes, but the "
            f"file has {actual_bytes}. The file is truncated or corrupt. "
            f"Download it again."
        )

    array = np.frombuffer(data, dtype=np.uint8, offset=header_bytes)
    return array.reshape(dims).copy()


def load_mnist(data_dir: str | os.PathLike | None = None) -> SequenceDataset:
    """Load MNIST with each image as 28 time steps of 28 pixel features.

    Places searched, in order:

    1. ``data_dir``, the folder that contains the four IDX files. If it is
       given, it is the only place searched.
    2. ``$LSTMKIT_DATA/mnist``, with the same four files.
    3. The Keras cache file ``~/.keras/datasets/mnist.npz``.

    Args:
        data_dir: Folder that contains the IDX files, or None to search
            ``$LSTMKIT_DATA/mnist`` and then the Keras cache.

    Returns:
        The data set: x float32 ``[n, 28, 28]`` with pixels scaled to
        ``[0, 1]``, y int64 ``[n]`` with digits 0 to 9, 60,000 training and
        10,000 test examples for the original files.

    Raises:
        DataNotFoundError: No searched place has the data. The message
            lists each place with the reason it was rejected.
        DataFormatError: A file was found but is invalid.
    """
    if data_dir is not None:
        folder = find_data_dir("mnist", MNIST_FILES, data_dir, MNIST_HINT)
        return _load_idx_folder(folder)

    try:
        folder = find_data_dir("mnist", MNIST_FILES, hint=MNIST_HINT)
    except DataNotFoundError as error:
        return _load_keras_cache_or_raise(list(error.searched))
    return _load_idx_folder(folder)


def keras_cache_path() -> Path:
    """Return the path of the Keras MNIST cache file.

    This is ``~/.keras/datasets/mnist.npz``, the file that
    ``keras.datasets.mnist.load_data`` downloads.

    NOTE: Keras 3 stores it under ``$KERAS_HOME`` instead when that variable
    is set, or under ``/tmp/.keras`` when ``~/.keras`` is not writable.
    Neither place is searched.
    """
    return Path.home() / ".keras" / "datasets" / "mnist.npz"


def _read_maybe_gzipped(path: Path) -> bytes:
    raw = path.read_bytes()
    if not raw:
        raise DataFormatError(
            f"Invalid IDX file {path}: the file is empty. Expected an IDX "
            f"header and uint8 data. Download the file again."
        )
    if not raw.startswith(_GZIP_MAGIC):
        return raw

    try:
        data = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as error:
        raise DataFormatError(
            f"Invalid IDX file {path}: corrupt gzip data "
            f"({type(error).__name__}: {error}). Expected a complete gzip "
            f"stream. Download the file again."
        ) from error

    if not data:
        raise DataFormatError(
            f"Invalid IDX file {path}: the gzip stream decompresses to 0 "
            f"bytes. Expected an IDX header and uint8 data. Download the "
            f"file again."
        )
    return data


def _read_idx_magic(path: Path, data: bytes) -> tuple[int, int]:
    """Return the magic number and the header size in bytes."""
    if len(data) < 4:
        raise DataFormatError(
            f"Invalid IDX file {path}: the header is truncated at "
            f"{len(data)} bytes. Expected at least 8 bytes (16 for images)."
        )

    magic = int.from_bytes(data[:4], "big")
    if magic not in _IDX_HEADER_BYTES:
        raise DataFormatError(
            f"Invalid IDX file {path}: unknown magic number 0x{magic:08x} "
            f"({magic}). Expected 0x{IDX_IMAGES_MAGIC:08x} "
            f"({IDX_IMAGES_MAGIC}, uint8 images) or 0x{IDX_LABELS_MAGIC:08x} "
            f"({IDX_LABELS_MAGIC}, uint8 labels)."
        )
    return magic, _IDX_HEADER_BYTES[magic]


def _read_idx_dims(
    path: Path, data: bytes, magic: int, header_bytes: int
) -> tuple[int, ...]:
    if len(data) < header_bytes:
        raise DataFormatError(
            f"Invalid IDX file {path}: the header is truncated at "
            f"{len(data)} bytes. Expected {header_bytes} header bytes for "
            f"magic {magic} ({_IDX_KIND[magic]})."
        )

    header = np.frombuffer(data, dtype=">u4", count=header_bytes // 4)
    return tuple(int(value) for value in header[1:])


def _load_idx_folder(folder: Path) -> SequenceDataset:
    splits = {
        "train": (MNIST_TRAIN_IMAGES, MNIST_TRAIN_LABELS),
        "test": (MNIST_TEST_IMAGES, MNIST_TEST_LABELS),
    }
    arrays = []
    for split, (images_name, labels_name) in splits.items():
        images_path = resolve_file(folder, images_name)
        labels_path = resolve_file(folder, labels_name)
        images = _read_images(images_path)
        labels = _read_labels(labels_path)

        _check_counts(
            split, images, labels, str(images_path), str(labels_path)
        )
        arrays += [images, labels]

    source = f"IDX files in {folder.absolute()}"
    return _build_dataset(tuple(arrays), source)


def _read_images(path: Path) -> np.ndarray:
    images = read_idx(path)
    expected = (MNIST_IMAGE_SIZE, MNIST_IMAGE_SIZE)
    if images.ndim != 3 or images.shape[1:] != expected:
        raise DataFormatError(
            f"Invalid MNIST images file {path}: got shape "
            f"{list(images.shape)}. Expected [count, 28, 28] "
            f"(magic {IDX_IMAGES_MAGIC})."
        )
    return images


def _read_labels(path: Path) -> np.ndarray:
    labels = read_idx(path)
    if labels.ndim != 1:
        raise DataFormatError(
            f"Invalid MNIST labels file {path}: got shape "
            f"{list(labels.shape)}. Expected [count] "
            f"(magic {IDX_LABELS_MAGIC})."
        )
    return labels


def _load_keras_cache_or_raise(searched: list[str]) -> SequenceDataset:
    path = keras_cache_path()
    if not path.is_file():
        searched.append(f"Keras cache {path}: file does not exist")
        raise not_found_error("mnist", MNIST_FILES, searched, MNIST_HINT)

    logger.info("Found mnist data in the Keras cache %s", path)
    x_train, y_train, x_test, y_test = _read_npz(path)

    for split, images, labels in [
        ("train", x_train, y_train),
        ("test", x_test, y_test),
    ]:
        images_name = f"x_{split} in {path}"
        labels_name = f"y_{split} in {path}"
        _check_counts(split, images, labels, images_name, labels_name)
    return _build_dataset(
        (x_train, y_train, x_test, y_test), f"Keras cache {path}"
    )


def _read_npz(path: Path) -> tuple[np.ndarray, ...]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            names = list(npz.files)
            arrays = {key: npz[key] for key in _NPZ_KEYS if key in names}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise DataFormatError(
            f"Invalid MNIST file {path}: cannot read it as a .npz archive "
            f"({type(error).__name__}: {error}). Delete the file so that "
            f"Keras downloads it again."
        ) from error

    missing = [key for key in _NPZ_KEYS if key not in arrays]
    if missing:
        raise DataFormatError(
            f"Invalid MNIST file {path}: missing arrays "
            f"{', '.join(missing)}. Expected the keys {', '.join(_NPZ_KEYS)}. "
            f"Delete the file so that Keras downloads it again."
        )

    for key in _NPZ_KEYS:
        _check_npz_array(path, key, arrays[key])
    return tuple(arrays[key] for key in _NPZ_KEYS)


def _check_npz_array(path: Path, key: str, array: np.ndarray) -> None:
    if key.startswith("x_"):
        expected_shape = "[count, 28, 28]"
        shape_ok = array.shape[1:] == (MNIST_IMAGE_SIZE, MNIST_IMAGE_SIZE)
        shape_ok = shape_ok and array.ndim == 3
    else:
        expected_shape = "[count]"
        shape_ok = array.ndim == 1

    if not shape_ok or array.dtype != np.uint8:
        raise DataFormatError(
            f"Invalid MNIST file {path}: {key} has shape "
            f"{list(array.shape)} and dtype {array.dtype}. Expected uint8 "
            f"{expected_shape}."
        )


def _build_dataset(
    arrays: tuple[np.ndarray, ...], source: str
) -> SequenceDataset:
    """Scale uint8 MNIST arrays and wrap them as a SequenceDataset."""
    x_train, y_train, x_test, y_test = arrays
    _check_labels(source, y_train)
    _check_labels(source, y_test)

    dataset = SequenceDataset(
        x_train=_scale_pixels(x_train),
        y_train=y_train.astype(np.int64),
        x_test=_scale_pixels(x_test),
        y_test=y_test.astype(np.int64),
        num_classes=MNIST_NUM_CLASSES,
        name="mnist",
        source=source,
    )
    logger.info(
        "Loaded mnist from %s: %d train, %d test examples",
        source,
        len(x_train),
        len(x_test),
    )
    return dataset


def _check_counts(
    split: str,
    images: np.ndarray,
    labels: np.ndarray,
    images_name: str,
    labels_name: str,
) -> None:
    if len(images) != len(labels):
        raise DataFormatError(
            f"MNIST {split} images and labels do not match: {images_name} "
            f"has {len(images)} images but {labels_name} has {len(labels)} "
            f"labels. Both must come from the same MNIST {split} set."
        )


def _check_labels(source: str, labels: np.ndarray) -> None:
    if labels.size and labels.max() >= MNIST_NUM_CLASSES:
        raise DataFormatError(
            f"Invalid MNIST labels in {source}: found label "
            f"{int(labels.max())}. Expected digits 0 to 9."
        )


def _scale_pixels(images: np.ndarray) -> np.ndarray:
    """Convert uint8 pixels to float32 in [0, 1]."""
    scaled = images.astype(np.float32)
    scaled /= 255.0
    return scaled
