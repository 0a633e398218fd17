"""CoNLL-2000 chunking: a reader, the loader and the conlleval chunk F1.

The files hold one token per line as ``WORD POS CHUNK``, separated by single
spaces, and a blank line after each sentence. The chunk tags use IOB2:
``B-X`` starts a chunk of type X, ``I-X`` continues it and ``O`` is outside
any chunk.

``chunk_f1`` counts chunks the way the CoNLL-2000 ``conlleval`` script does,
so its scores are comparable with published chunking results.
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from .locate import DataFormatError, find_data_dir, resolve_file
from .sequences import TaggedSentence, TaggingDataset

logger = logging.getLogger(__name__)

CONLL2000_COLUMNS = ("word", "pos", "chunk")
CONLL2000_TRAIN = "train.txt"
CONLL2000_TEST = "test.txt"
CONLL2000_FILES = [CONLL2000_TRAIN, CONLL2000_TEST]

CONLL2000_HINT = (
    "Get train.txt and test.txt of the CoNLL-2000 chunking task, for "
    "example from the conll2000 folder of NLTK's conll2000.zip data package "
    "(python -m nltk.downloader conll2000 stores it under "
    "~/nltk_data/corpora/)."
)

_OUTSIDE = "O"
_CHUNK_PREFIXES = ("B", "I")


class TokenBlock(NamedTuple):
    """The token lines of one sentence in a column file.

    Attributes:
        line: 1-based line number of the sentence's first token.
        rows: One tuple of column values per token.
    """

    line: int
    rows: list[tuple[str, ...]]


def read_conll(
    path: str | os.PathLike, columns: Sequence[str] = CONLL2000_COLUMNS
) -> list[list[tuple[str, ...]]]:
    """Read a CoNLL-2000 style file: space-separated columns, one token a line.

    A blank line ends a sentence. Several blank lines in a row end only one
    sentence, and the last sentence needs no blank line after it.

    Args:
        path: Path of the file.
        columns: Names of the columns, used for the expected column count
            and in error messages. The default is word, POS and chunk tag.

    Returns:
        The sentences, each a list with one tuple of ``len(columns)``
        strings per token.

    Raises:
        DataFormatError: The file is empty, is not UTF-8, contains no
            sentences, or a line has the wrong number of columns or an empty
            column. The message names the file and the line.
        FileNotFoundError: ``path`` does not exist.
    """
    blocks = read_column_blocks(path, " ", columns, "CoNLL")
    return [block.rows for block in blocks]


def read_column_blocks(
    path: str | os.PathLike,
    separator: str,
    columns: Sequence[str],
    format_name: str,
) -> list[TokenBlock]:
    """Read a file of one token per line and blank lines between sentences.

    Args:
        path: Path of the file.
        separator: The exact string between two columns, for example
            ``" "`` or ``"\\t"``. Two separators in a row make an empty
            column, which is an error.
        columns: Names of the columns, which fix the expected count.
        format_name: Name of the format in error messages, for example
            ``CoNLL``.

    Returns:
        One block per sentence, with the line number of its first token.

    Raises:
        DataFormatError: The file is empty, is not UTF-8, contains no
            sentences, or a line has the wrong number of columns or an empty
            column. The message names the file and the line.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    lines = _read_lines(path, format_name)

    file = f"{format_name} file {path}"
    blocks: list[TokenBlock] = []
    rows: list[tuple[str, ...]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            if rows:
                blocks.append(TokenBlock(number - len(rows), rows))
            rows = []
            continue
        fields = line.split(separator)
        _check_fields(file, number, line, fields, separator, columns)
        rows.append(tuple(fields))

    if rows:
        blocks.append(TokenBlock(len(lines) + 1 - len(rows), rows))
    if not blocks:
        raise DataFormatError(
            f"Invalid {file}, lines 1-{len(lines)}: all lines are blank. "
            f"Expected one token per line with "
            f"{_describe_columns(separator, columns)}."
        )
    return blocks


def chunks(tags: Sequence[str]) -> set[tuple[str, int, int]]:
    """Extract the chunks of one sentence from its IOB2 tags.

    The rules are those of the CoNLL-2000 ``conlleval`` script. A chunk of
    type X starts at ``B-X``, and also at ``I-X`` when the previous tag is
    ``O`` or of another type. A chunk ends before the next ``O``, before
    any ``B-`` tag, before a tag of another type, and at the end of the
    sentence.

    Args:
        tags: One tag per token: ``O``, ``B-X`` or ``I-X``.

    Returns:
        The chunks as ``(type, start, end)`` token spans, with ``end``
        exclusive.

    Raises:
        ValueError: A tag is not ``O``, ``B-X`` or ``I-X`` with a non-empty
            type X.
    """
    found = set()
    current: str | None = None
    start = 0
    for index, tag in enumerate(tags):
        prefix, kind = split_chunk_tag(tag, index)
        begins = prefix == "B" or (prefix == "I" and kind != current)
        if current is not None and (prefix == _OUTSIDE or begins):
            found.add((current, start, index))
            current = None
        if begins:
            current, start = kind, index

    if current is not None:
        found.add((current, start, len(tags)))
    return found


def split_chunk_tag(tag: str, index: int = 0) -> tuple[str, str | None]:
    """Split an IOB2 tag into its prefix and chunk type.

    Args:
        tag: ``O``, ``B-X`` or ``I-X``.
        index: Position of the tag in its sentence, for the error message.

    Returns:
        ``("O", None)`` for ``O``, else the prefix ``B`` or ``I`` and the
        type, for example ``("B", "NP")``.

    Raises:
        ValueError: The tag is not ``O``, ``B-X`` or ``I-X`` with a
            non-empty type X.
    """
    if tag == _OUTSIDE:
        return _OUTSIDE, None

    prefix, dash, kind = tag.partition("-")
    if prefix not in _CHUNK_PREFIXES or not dash or not kind:
        raise ValueError(
            f"Invalid IOB2 tag {tag!r} at token {index}. Expected 'O', "
            f"'B-<type>' or 'I-<type>', for example 'B-NP'."
        )
    return prefix, kind


def chunk_f1(
    gold_sentences: Sequence[Sequence[str]],
    predicted_sentences: Sequence[Sequence[str]],
) -> dict[str, Any]:
    """Score predicted IOB2 tags against gold tags by exact chunk matches.

    A predicted chunk is correct when a gold chunk has the same type, start
    and end. Chunks are extracted with ``chunks``, which follows the chunk
    rules of the CoNLL-2000 ``conlleval`` script, so the scores are meant
    to equal its overall line, as fractions instead of percentages.
    Precision, recall and F1 are 0.0 when their denominator is 0.

    NOTE: the scores were checked on hand-made cases only, not against the
    output of a conlleval run.

    Args:
        gold_sentences: Gold tags, one list per sentence.
        predicted_sentences: Predicted tags, one list per sentence, each
            as long as its gold sentence.

    Returns:
        A dict with ``precision``, ``recall``, ``f1`` and ``accuracy``
        (token accuracy) as fractions in ``[0, 1]``, the counts
        ``gold_chunks``, ``predicted_chunks``, ``correct_chunks`` and
        ``tokens``, and ``by_type``: the same chunk scores and counts for
        each chunk type in the gold or predicted tags.

    Raises:
        ValueError: The sentence counts or the lengths of a sentence pair
            differ, or a tag is not ``O``, ``B-X`` or ``I-X``.
    """
    _check_same_shape(gold_sentences, predicted_sentences)

    counts: dict[str, collections.Counter[str]] = {}
    tokens = correct_tokens = 0
    for gold_tags, predicted_tags in zip(gold_sentences, predicted_sentences):
        gold = chunks(gold_tags)
        predicted = chunks(predicted_tags)
        _add_chunk_counts(counts, gold, predicted)

        tokens += len(gold_tags)
        correct_tokens += sum(
            gold_tag == predicted_tag
            for gold_tag, predicted_tag in zip(gold_tags, predicted_tags)
        )

    totals = sum(counts.values(), collections.Counter())
    scores = _chunk_scores(totals)
    scores["accuracy"] = correct_tokens / tokens if tokens else 0.0
    scores["tokens"] = tokens
    scores["by_type"] = {
        kind: _chunk_scores(counts[kind]) for kind in sorted(counts)
    }
    return scores


def load_conll2000(
    data_dir: str | os.PathLike | None = None,
) -> TaggingDataset:
    """Load CoNLL-2000 chunking: words with POS features and chunk tags.

    Places searched, in order: ``data_dir`` (the folder that contains
    ``train.txt`` and ``test.txt``), then ``$LSTMKIT_DATA/conll2000``.

    Args:
        data_dir: Folder that contains the files, or None to search
            ``$LSTMKIT_DATA/conll2000``.

    Returns:
        The data set: sentences with ``words``, ``features["pos"]`` and
        IOB2 chunk ``tags``, and ``tag_scheme="iob2"``. The original files
        give 8,936 train and 2,012 test sentences and no dev set.

    Raises:
        DataNotFoundError: No searched place has both files.
        DataFormatError: A file was found but is invalid. The message names
            the file and the line.
    """
    folder = find_data_dir(
        "conll2000", CONLL2000_FILES, data_dir, CONLL2000_HINT
    )
    train = _read_chunk_sentences(resolve_file(folder, CONLL2000_TRAIN))
    test = _read_chunk_sentences(resolve_file(folder, CONLL2000_TEST))

    source = f"CoNLL-2000 files in {folder.absolute()}"
    logger.info(
        "Loaded conll2000 from %s: %d train, %d test sentences",
        source,
        len(train),
        len(test),
    )
    return TaggingDataset(
        train=train,
        dev=[],
        test=test,
        name="conll2000",
        source=source,
        tag_scheme="iob2",
    )


def _read_chunk_sentences(path: Path) -> list[TaggedSentence]:
    sentences = []
    for block in read_column_blocks(path, " ", CONLL2000_COLUMNS, "CoNLL"):
        words, pos_tags, chunk_tags = (list(col) for col in zip(*block.rows))
        _check_chunk_tags(path, block.line, chunk_tags)
        sentences.append(
            TaggedSentence(
                words=words, tags=chunk_tags, features={"pos": pos_tags}
            )
        )
    return sentences


def _check_chunk_tags(path: Path, first_line: int, tags: list[str]) -> None:
    for index, tag in enumerate(tags):
        try:
            split_chunk_tag(tag, index)
        except ValueError:
            raise DataFormatError(
                f"Invalid CoNLL file {path}, line {first_line + index}: "
                f"invalid chunk tag {tag!r} in column 3. Expected 'O', "
                f"'B-<type>' or 'I-<type>' (IOB2), for example 'B-NP'."
            ) from None


def _add_chunk_counts(
    counts: dict[str, collections.Counter[str]],
    gold: set[tuple[str, int, int]],
    predicted: set[tuple[str, int, int]],
) -> None:
    """Add one sentence's gold, predicted and correct chunks per type."""
    groups = {"gold": gold, "predicted": predicted, "correct": gold & predicted}
    for group, spans in groups.items():
        for kind, _, _ in spans:
            counts.setdefault(kind, collections.Counter())[group] += 1


def _chunk_scores(counts: collections.Counter[str]) -> dict[str, Any]:
    gold, predicted = counts["gold"], counts["predicted"]
    correct = counts["correct"]
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    total = precision + recall
    f1 = 2 * precision * recall / total if total else 0.0
    return {
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "gold_chunks": gold,
        "predicted_chunks": predicted,
        "correct_chunks": correct,
    }


def _check_same_shape(
    gold_sentences: Sequence[Sequence[str]],
    predicted_sentences: Sequence[Sequence[str]],
) -> None:
    if len(gold_sentences) != len(predicted_sentences):
        raise ValueError(
            f"chunk_f1: got {len(gold_sentences)} gold sentences but "
            f"{len(predicted_sentences)} predicted sentences. Expected one "
            f"prediction per gold sentence."
        )

    pairs = enumerate(zip(gold_sentences, predicted_sentences))
    for index, (gold_tags, predicted_tags) in pairs:
        if len(gold_tags) != len(predicted_tags):
            raise ValueError(
                f"chunk_f1: sentence {index} has {len(gold_tags)} gold tags "
                f"but {len(predicted_tags)} predicted tags. Expected one "
                f"predicted tag per token."
            )


def _read_lines(path: Path, format_name: str) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataFormatError(
            f"Invalid {format_name} file {path}: not UTF-8 text ({error}). "
            f"Expected a UTF-8 or ASCII text file."
        ) from error

    if not text:
        raise DataFormatError(
            f"Invalid {format_name} file {path}: the file is empty. Expected "
            f"one token per line and a blank line after each sentence."
        )

    # str.splitlines would also split at characters such as \x1c and
    # \u2028, which may occur inside a word. Only \n and \r\n end a line.
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def _check_fields(
    file: str,
    number: int,
    line: str,
    fields: list[str],
    separator: str,
    columns: Sequence[str],
) -> None:
    if len(fields) == len(columns) and all(fields):
        return

    found = f"{len(fields)} columns"
    if len(fields) == len(columns):
        found = f"an empty column {fields.index('') + 1}"
    raise DataFormatError(
        f"Invalid {file}, line {number}: found {found} in "
        f"{line[:80]!r}. Expected {_describe_columns(separator, columns)}."
    )


def _describe_columns(separator: str, columns: Sequence[str]) -> str:
    separator_names = {" ": "single spaces", "\t": "single tabs"}
    between = separator_names.get(separator, repr(separator))
    names = " ".join(columns)
    return f"{len(columns)} columns ({names}) separated by {between}"
