"""Japanese Vowels speaker recognition and a reader for ``.ts`` files.

Each of the 640 utterances is a sequence of 7 to 29 frames with 12 cepstrum
coefficients each, labeled with one of 9 speakers. The files use the
sktime/aeon ``.ts`` text format: ``#`` comment lines, ``@`` header fields,
an ``@data`` line, then one series per line. A series line contains the
dimensions separated by ``:``, each a comma-separated list of values, then
``:`` and the class label.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path

import numpy as np

from .locate import DataFormatError, find_data_dir, resolve_file
from .sequences import VariableLengthDataset

logger = logging.getLogger(__name__)

VOWELS_TRAIN = "JapaneseVowels_TRAIN.ts"
VOWELS_TEST = "JapaneseVowels_TEST.ts"
VOWELS_FILES = [VOWELS_TRAIN, VOWELS_TEST]

VOWELS_HINT = (
    "Get JapaneseVowels_TRAIN.ts and JapaneseVowels_TEST.ts from the "
    "sktime package, which ships them in sktime/datasets/data/"
    "JapaneseVowels/ (for example in the sktime 1.2.0 wheel on PyPI). The "
    "data set is 'Japanese Vowels' from the UCI Machine Learning Repository."
)

_MISSING_VALUE = "?"
# Values are stored as float32, so a larger magnitude would become Inf.
_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass
class _TsHeader:
    """The header fields of a ``.ts`` file that the reader uses."""

    dimensions: int | None = None
    univariate: bool | None = None
    class_names: list[str] | None = None
    equal_length: bool = False
    series_length: int | None = None
    missing: bool = False
    seen_fields: int = 0


def read_ts(
    path: str | os.PathLike,
) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """Read a classification data set in the sktime/aeon ``.ts`` format.

    The header must declare the class labels with ``@classLabel true``
    followed by the label names. The number of dimensions comes from
    ``@dimensions``, else 1 if ``@univariate true``, else the first series.
    With ``@missing true``, a ``?`` value reads as NaN. With
    ``@equalLength true`` all series must have the same length, and with
    ``@seriesLength N`` that length must be N. Blank lines and ``#`` lines
    are skipped everywhere. Unknown header fields are ignored.

    Args:
        path: Path of the ``.ts`` file.

    Returns:
        A tuple ``(series, labels, class_names)``: one float32
        ``[length, dimensions]`` array per series, int64 ``[n]`` labels as
        indices into ``class_names``, and the class names in the order of
        ``@classLabel``.

    Raises:
        DataFormatError: The file is empty or not UTF-8, the header or
            ``@data`` is missing, or a header field is invalid. Also raised
            when a series line has the wrong number of dimensions,
            dimensions of different lengths, a value that is not a float,
            a NaN without ``@missing true``, a value beyond the float32
            range (Inf included), or an undeclared label. The message
            names the file, the line and what was expected. ``@timeStamps true`` and
            ``@targetLabel true`` (regression) are not supported and raise
            too.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    lines = _read_lines(path)

    header, data_start = _parse_header(path, lines)
    series, label_names, line_numbers = _parse_data(
        path, lines, data_start, header
    )

    class_names = header.class_names
    labels = _label_indices(path, label_names, line_numbers, class_names)
    return series, labels, list(class_names)


def load_vowels(
    data_dir: str | os.PathLike | None = None,
) -> VariableLengthDataset:
    """Load Japanese Vowels: 12 cepstrum coefficients per frame, 9 speakers.

    Places searched, in order: ``data_dir`` (the folder that contains the
    two ``.ts`` files), then ``$LSTMKIT_DATA/japanese-vowels``.

    Args:
        data_dir: Folder that contains the files, or None to search
            ``$LSTMKIT_DATA/japanese-vowels``.

    Returns:
        The data set: one float32 ``[length, 12]`` array per utterance,
        with the raw coefficients, and int64 labels 0 to 8 for the class
        names ``"1"`` to ``"9"``. The original files give 270 training
        sequences of 7 to 26 frames and 370 test sequences of 7 to 29
        frames.

    Raises:
        DataNotFoundError: No searched place has both files.
        DataFormatError: A file was found but is invalid, or the two files
            declare different class labels or numbers of dimensions.
    """
    folder = find_data_dir(
        "japanese-vowels", VOWELS_FILES, data_dir, VOWELS_HINT
    )
    train_path = resolve_file(folder, VOWELS_TRAIN)
    test_path = resolve_file(folder, VOWELS_TEST)
    x_train, y_train, class_names = read_ts(train_path)
    x_test, y_test, test_class_names = read_ts(test_path)
    _check_same_classes(train_path, test_path, class_names, test_class_names)
    _check_same_dimensions(train_path, test_path, x_train[0], x_test[0])

    source = f".ts files in {folder.absolute()}"
    logger.info(
        "Loaded japanese-vowels from %s: %d train, %d test sequences",
        source,
        len(x_train),
        len(x_test),
    )
    return VariableLengthDataset(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=len(class_names),
        class_names=class_names,
        name="japanese-vowels",
        source=source,
    )


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataFormatError(
            f"Invalid .ts file {path}: not UTF-8 text ({error}). Expected a "
            f"text file in the sktime/aeon .ts format."
        ) from error

    if not text.strip():
        raise DataFormatError(
            f"Invalid .ts file {path}: the file is empty. Expected header "
            f"fields such as @dimensions and @classLabel, then @data and one "
            f"series per line."
        )
    return text.splitlines()


def _parse_header(path: Path, lines: list[str]) -> tuple[_TsHeader, int]:
    """Parse the header and return it with the index of the first series line.

    The index is 0-based, so it is also the 1-based number of the ``@data``
    line.
    """
    header = _TsHeader()
    for index, raw_line in enumerate(lines):
        line = raw_line.strip()
        number = index + 1
        if not line or line.startswith("#"):
            continue

        if not line.startswith("@"):
            raise DataFormatError(
                f"Invalid .ts file {path}, line {number}: found a series "
                f"before @data. Expected header fields (lines that start "
                f"with @), then @data, then the series."
            )
        words = line[1:].split()
        if not words:
            raise DataFormatError(
                f"Invalid .ts file {path}, line {number}: found '@' without "
                f"a field name. Expected a header field such as "
                f"@dimensions 12."
            )
        key, *values = words
        if key.lower() == "data":
            _check_header_complete(path, number, header)
            return header, number
        _apply_field(path, number, header, key, values)

    raise DataFormatError(
        f"Invalid .ts file {path}, line {len(lines)}: reached the end of the "
        f"file without an @data line. Expected @data after the header "
        f"fields, then one series per line."
    )


def _apply_field(
    path: Path, number: int, header: _TsHeader, key: str, values: list[str]
) -> None:
    """Store one header field in ``header``."""
    field = key.lower()
    header.seen_fields += 1
    if field == "dimensions":
        header.dimensions = _parse_int(path, number, key, values)
    elif field == "serieslength":
        header.series_length = _parse_int(path, number, key, values)
    elif field == "univariate":
        header.univariate = _parse_bool(path, number, key, values)
    elif field == "equallength":
        header.equal_length = _parse_bool(path, number, key, values)
    elif field == "missing":
        header.missing = _parse_bool(path, number, key, values)
    elif field == "classlabel":
        header.class_names = _parse_class_label(path, number, key, values)
    elif field in ("timestamps", "targetlabel"):
        _reject_if_true(path, number, key, values)
    else:
        logger.debug("%s, line %d: ignoring @%s", path, number, key)


def _parse_int(path: Path, number: int, key: str, values: list[str]) -> int:
    if len(values) == 1 and values[0].isascii() and values[0].isdigit():
        if int(values[0]) >= 1:
            return int(values[0])
    raise DataFormatError(
        f"Invalid .ts file {path}, line {number}: @{key} has the value "
        f"{' '.join(values)!r}. Expected one positive int, for example "
        f"@{key} 12."
    )


def _parse_bool(path: Path, number: int, key: str, values: list[str]) -> bool:
    if len(values) == 1 and values[0].lower() in ("true", "false"):
        return values[0].lower() == "true"
    raise DataFormatError(
        f"Invalid .ts file {path}, line {number}: @{key} has the value "
        f"{' '.join(values)!r}. Expected true or false."
    )


def _parse_class_label(
    path: Path, number: int, key: str, values: list[str]
) -> list[str]:
    has_labels = _parse_bool(path, number, key, values[:1])
    names = values[1:]
    if not has_labels or not names:
        raise DataFormatError(
            f"Invalid .ts file {path}, line {number}: found "
            f"@{key} {' '.join(values)}. Expected @{key} true followed by "
            f"the class labels, for example @{key} true 1 2 3, because "
            f"read_ts reads classification data."
        )

    if len(set(names)) != len(names):
        raise DataFormatError(
            f"Invalid .ts file {path}, line {number}: @{key} declares a "
            f"label more than once ({' '.join(names)}). Expected each class "
            f"label once."
        )
    return names


def _reject_if_true(
    path: Path, number: int, key: str, values: list[str]
) -> None:
    if _parse_bool(path, number, key, values):
        raise DataFormatError(
            f"Unsupported .ts file {path}, line {number}: @{key} true is "
            f"not supported. Expected @{key} false, because read_ts reads "
            f"classification series without time stamps."
        )


def _check_header_complete(path: Path, number: int, header: _TsHeader) -> None:
    if header.seen_fields == 0:
        raise DataFormatError(
            f"Invalid .ts file {path}, line {number}: @data comes before "
            f"any header field. Expected a header with at least @classLabel "
            f"before @data."
        )
    if header.class_names is None:
        raise DataFormatError(
            f"Invalid .ts file {path}, line {number}: the header has no "
            f"@classLabel field. Expected @classLabel true followed by the "
            f"class labels before @data."
        )


def _parse_data(
    path: Path, lines: list[str], start: int, header: _TsHeader
) -> tuple[list[np.ndarray], list[str], list[int]]:
    """Parse the series lines after ``@data``.

    Returns:
        The series, their label names and their 1-based line numbers.
    """
    dimensions = header.dimensions
    if dimensions is None and header.univariate:
        dimensions = 1

    series, labels, numbers = [], [], []
    for index in range(start, len(lines)):
        line = lines[index].strip()
        number = index + 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("@"):
            raise DataFormatError(
                f"Invalid .ts file {path}, line {number}: found the header "
                f"field {line.split()[0]} after @data. Expected only series "
                f"lines after @data."
            )

        if dimensions is None:
            dimensions = _count_dimensions(path, number, line)
        values, label = _parse_series(path, number, line, dimensions, header)
        first_length = len(series[0]) if series else len(values)
        where = f"Invalid .ts file {path}, line {number}"
        _check_series_length(where, len(values), first_length, header)
        series.append(values)
        labels.append(label)
        numbers.append(number)

    if not series:
        raise DataFormatError(
            f"Invalid .ts file {path}, line {len(lines)}: reached the end of "
            f"the file without a series after @data (line {start}). Expected "
            f"one series per line."
        )
    return series, labels, numbers


def _count_dimensions(path: Path, number: int, line: str) -> int:
    """Return the number of dimensions of the first series."""
    logger.debug(
        "%s has no @dimensions field, so the first series (line %d) sets it",
        path,
        number,
    )
    return max(line.count(":"), 1)


def _parse_series(
    path: Path, number: int, line: str, dimensions: int, header: _TsHeader
) -> tuple[np.ndarray, str]:
    """Parse a series line into float32 ``[length, dimensions]`` and a label."""
    *parts, label = line.split(":")
    where = f"Invalid .ts file {path}, line {number}"
    if len(parts) != dimensions:
        raise DataFormatError(
            f"{where}: found {len(parts)} dimensions and a label. Expected "
            f"{dimensions} dimensions separated by ':', then ':' and the "
            f"class label."
        )

    columns = [
        _parse_values(where, dimension, text, header.missing)
        for dimension, text in enumerate(parts, start=1)
    ]
    _check_lengths(where, columns)
    return np.array(columns, dtype=np.float32).T.copy(), label.strip()


def _parse_values(
    where: str, dimension: int, text: str, missing: bool
) -> list[float]:
    values = []
    for position, token in enumerate(text.split(","), start=1):
        if missing and token.strip() == _MISSING_VALUE:
            values.append(float("nan"))
            continue
        try:
            value = float(token)
        except ValueError:
            raise DataFormatError(
                f"{where}: value {position} of dimension {dimension} is "
                f"{token!r}. Expected a float such as -0.25"
                f"{_missing_hint(token)}."
            ) from None
        _check_finite(where, position, dimension, token, value, missing)
        values.append(value)
    return values


def _check_finite(
    where: str,
    position: int,
    dimension: int,
    token: str,
    value: float,
    missing: bool,
) -> None:
    """Reject NaN outside ``@missing true``, and values beyond float32."""
    if math.isnan(value) and not missing:
        raise DataFormatError(
            f"{where}: value {position} of dimension {dimension} is "
            f"{token!r}, which reads as NaN. Write a missing value as ? and "
            f"declare @missing true in the header."
        )
    if not math.isnan(value) and abs(value) > _FLOAT32_MAX:
        raise DataFormatError(
            f"{where}: value {position} of dimension {dimension} is "
            f"{token!r}, which is not a finite float32 (largest magnitude "
            f"{_FLOAT32_MAX:.4g}). Expected a finite value such as -0.25."
        )


def _missing_hint(token: str) -> str:
    if token.strip() == _MISSING_VALUE:
        return ", or @missing true in the header to read ? as NaN"
    return ""


def _check_lengths(where: str, columns: list[list[float]]) -> None:
    first = len(columns[0])
    for dimension, column in enumerate(columns, start=1):
        if len(column) != first:
            raise DataFormatError(
                f"{where}: dimension {dimension} has {len(column)} values but "
                f"dimension 1 has {first}. Expected all dimensions of a "
                f"series to have the same length."
            )


def _check_series_length(
    where: str, length: int, first_length: int, header: _TsHeader
) -> None:
    """Check a series length against @seriesLength and @equalLength."""
    expected = header.series_length
    if expected is not None and length != expected:
        raise DataFormatError(
            f"{where}: the series has length {length}. Expected length "
            f"{expected}, which @seriesLength declares."
        )
    if header.equal_length and length != first_length:
        raise DataFormatError(
            f"{where}: the series has length {length} but the first series "
            f"has {first_length}. Expected equal lengths, because the header "
            f"has @equalLength true."
        )


def _label_indices(
    path: Path,
    label_names: list[str],
    line_numbers: list[int],
    class_names: list[str],
) -> np.ndarray:
    index_of = {name: index for index, name in enumerate(class_names)}
    for name, number in zip(label_names, line_numbers):
        if name not in index_of:
            raise DataFormatError(
                f"Invalid .ts file {path}, line {number}: unknown class "
                f"label {name!r}. Expected one of the labels that "
                f"@classLabel declares: {' '.join(class_names)}."
            )
    return np.array([index_of[name] for name in label_names], dtype=np.int64)


def _check_same_classes(
    train_path: Path,
    test_path: Path,
    train_names: list[str],
    test_names: list[str],
) -> None:
    if train_names != test_names:
        raise DataFormatError(
            f"The .ts files declare different class labels: {train_path} "
            f"has {' '.join(train_names)} and {test_path} has "
            f"{' '.join(test_names)}. Expected the same @classLabel list in "
            f"both files."
        )


def _check_same_dimensions(
    train_path: Path,
    test_path: Path,
    train_series: np.ndarray,
    test_series: np.ndarray,
) -> None:
    if train_series.shape[1] != test_series.shape[1]:
        raise DataFormatError(
            f"The .ts files have different numbers of dimensions: "
            f"{train_path} has {train_series.shape[1]} and {test_path} has "
            f"{test_series.shape[1]}. Expected the same number in both "
            f"files."
        )
