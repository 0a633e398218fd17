"""POS tagging on NLTK's Penn Treebank sample, split by WSJ document.

``treebank_pos.txt`` contains one ``WORD<TAB>TAG`` line per token and a blank
line after each sentence. ``docs.tsv`` gives each document's first sentence
and sentence count, which ``load_treebank_pos`` uses to split by document.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import NamedTuple

from .conll import read_column_blocks
from .locate import DataFormatError, find_data_dir, resolve_file
from .sequences import TaggedSentence, TaggingDataset

logger = logging.getLogger(__name__)

TREEBANK_SENTENCES = "treebank_pos.txt"
TREEBANK_DOCS = "docs.tsv"
TREEBANK_FILES = [TREEBANK_SENTENCES, TREEBANK_DOCS]

# Document numbers of each split: wsj_0001-0159, wsj_0160-0179 and
# wsj_0180-0199.
TREEBANK_SPLITS = {
    "train": range(1, 160),
    "dev": range(160, 180),
    "test": range(180, 200),
}

TREEBANK_HINT = (
    "Get NLTK's treebank sample (python -m nltk.downloader treebank) and "
    "write treebank_pos.txt from nltk.corpus.treebank.tagged_sents(fileid) "
    "for each file wsj_0001.mrg to wsj_0199.mrg in order, as WORD<TAB>TAG "
    "lines with a blank line after each sentence and the -NONE- tokens "
    "removed. Write docs.tsv with the header doc, first_sentence, "
    "n_sentences (tab-separated) and one row per file."
)

_DOCS_HEADER = ["doc", "first_sentence", "n_sentences"]
_DOCS_HEADER_LINE = "\t".join(_DOCS_HEADER)
_DOC_NAME = re.compile(r"wsj_(\d{4})")


class TreebankDocument(NamedTuple):
    """One row of ``docs.tsv``.

    Attributes:
        name: Document name, for example ``wsj_0001``.
        first_sentence: 0-based index of its first sentence.
        n_sentences: Number of sentences.
        line: 1-based line number in ``docs.tsv``.
    """

    name: str
    first_sentence: int
    n_sentences: int
    line: int

    @property
    def number(self) -> int:
        """Document number, for example 1 for ``wsj_0001``."""
        return int(self.name.removeprefix("wsj_"))


def read_word_tag(path: str | os.PathLike) -> list[list[tuple[str, str]]]:
    """Read ``WORD<TAB>TAG`` lines with a blank line after each sentence.

    Args:
        path: Path of the file.

    Returns:
        The sentences, each a list of ``(word, tag)`` pairs.

    Raises:
        DataFormatError: The file is empty, is not UTF-8, contains no
            sentences, or a line does not have exactly two non-empty
            tab-separated columns. The message names the file and the line.
        FileNotFoundError: ``path`` does not exist.
    """
    blocks = read_column_blocks(path, "\t", ("word", "tag"), "word-tag")
    return [block.rows for block in blocks]


def read_docs(path: str | os.PathLike) -> list[TreebankDocument]:
    """Read ``docs.tsv``: the document, first sentence and count of each file.

    Args:
        path: Path of the file.

    Returns:
        The documents in file order.

    Raises:
        DataFormatError: The header is not ``doc first_sentence
            n_sentences``, a row does not have 3 columns, a name is not
            ``wsj_NNNN``, a name occurs twice, a number is not a
            non-negative int, or a count is 0. The message names the file
            and the line.
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as error:
        raise DataFormatError(
            f"Invalid docs file {path}: not UTF-8 text ({error}). Expected "
            f"a tab-separated text file."
        ) from error
    if not lines or lines[0].split("\t") != _DOCS_HEADER:
        found = repr(lines[0]) if lines else "an empty file"
        raise DataFormatError(
            f"Invalid docs file {path}, line 1: found {found}. Expected the "
            f"header {_DOCS_HEADER_LINE!r}."
        )

    documents = []
    seen: set[str] = set()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        document = _parse_doc_row(path, number, line)
        if document.name in seen:
            raise DataFormatError(
                f"Invalid docs file {path}, line {number}: document "
                f"{document.name} occurs twice. Expected one row per document."
            )
        seen.add(document.name)
        documents.append(document)
    return documents


def load_treebank_pos(
    data_dir: str | os.PathLike | None = None,
) -> TaggingDataset:
    """Load the Penn Treebank sample for POS tagging, split by document.

    Places searched, in order: ``data_dir`` (the folder that contains
    ``treebank_pos.txt`` and ``docs.tsv``), then
    ``$LSTMKIT_DATA/treebank-pos``.

    Documents wsj_0001-0159 are the training set, wsj_0160-0179 the dev set
    and wsj_0180-0199 the test set. For NLTK's sample without ``-NONE-``
    tokens, that gives 3,396 / 273 / 245 sentences and 81,793 / 6,327 /
    5,964 tokens.

    Args:
        data_dir: Folder that contains the files, or None to search
            ``$LSTMKIT_DATA/treebank-pos``.

    Returns:
        The data set: sentences with ``words``, POS ``tags``, no
        ``features``, and ``tag_scheme="pos"``.

    Raises:
        DataNotFoundError: No searched place has both files.
        DataFormatError: A file was found but is invalid, or ``docs.tsv``
            does not cover the sentences of ``treebank_pos.txt`` exactly,
            in order and without gaps or overlaps. The message names the
            file and the line.
    """
    folder = find_data_dir(
        "treebank-pos", TREEBANK_FILES, data_dir, TREEBANK_HINT
    )
    sentences_path = resolve_file(folder, TREEBANK_SENTENCES)
    docs_path = resolve_file(folder, TREEBANK_DOCS)

    sentences = [_to_sentence(pairs) for pairs in read_word_tag(sentences_path)]
    documents = read_docs(docs_path)
    _check_coverage(docs_path, sentences_path, documents, len(sentences))
    splits = _split_by_document(docs_path, documents, sentences)

    source = f"treebank files in {folder.absolute()}"
    logger.info(
        "Loaded treebank-pos from %s: %d train, %d dev, %d test sentences",
        source,
        len(splits["train"]),
        len(splits["dev"]),
        len(splits["test"]),
    )
    return TaggingDataset(
        **splits, name="treebank-pos", source=source, tag_scheme="pos"
    )


def _to_sentence(pairs: list[tuple[str, ...]]) -> TaggedSentence:
    words, tags = (list(column) for column in zip(*pairs))
    return TaggedSentence(words=words, tags=tags)


def _parse_doc_row(path: Path, number: int, line: str) -> TreebankDocument:
    fields = line.split("\t")
    if len(fields) != len(_DOCS_HEADER):
        raise DataFormatError(
            f"Invalid docs file {path}, line {number}: found {len(fields)} "
            f"columns in {line[:80]!r}. Expected 3 tab-separated columns: "
            f"{', '.join(_DOCS_HEADER)}."
        )

    name, first_text, count_text = fields
    if not _DOC_NAME.fullmatch(name):
        raise DataFormatError(
            f"Invalid docs file {path}, line {number}: invalid document name "
            f"{name!r}. Expected wsj_ and 4 digits, for example wsj_0001."
        )
    first = _parse_count(path, number, "first_sentence", first_text, 0)
    count = _parse_count(path, number, "n_sentences", count_text, 1)
    return TreebankDocument(name, first, count, number)


def _parse_count(
    path: Path, number: int, column: str, text: str, minimum: int
) -> int:
    if text.isascii() and text.isdigit() and int(text) >= minimum:
        return int(text)
    raise DataFormatError(
        f"Invalid docs file {path}, line {number}: invalid {column} "
        f"{text!r}. Expected an int of at least {minimum}."
    )


def _check_coverage(
    docs_path: Path,
    sentences_path: Path,
    documents: list[TreebankDocument],
    n_sentences: int,
) -> None:
    """Check that the documents cover sentences 0 to n - 1 once, in order."""
    expected_first = 0
    for document in documents:
        if document.first_sentence != expected_first:
            raise DataFormatError(
                f"Invalid docs file {docs_path}, line {document.line}: "
                f"{document.name} starts at sentence "
                f"{document.first_sentence}. Expected {expected_first}, "
                f"where the previous document ends, so that the documents "
                f"cover every sentence once."
            )
        expected_first += document.n_sentences

    if expected_first != n_sentences:
        last_line = documents[-1].line if documents else 1
        raise DataFormatError(
            f"Invalid docs file {docs_path}, line {last_line}: the documents "
            f"cover {expected_first} sentences, but {sentences_path} has "
            f"{n_sentences}. Expected docs.tsv to cover every sentence once."
        )


def _split_by_document(
    docs_path: Path,
    documents: list[TreebankDocument],
    sentences: list[TaggedSentence],
) -> dict[str, list[TaggedSentence]]:
    splits: dict[str, list[TaggedSentence]] = {
        split: [] for split in TREEBANK_SPLITS
    }
    for document in documents:
        split = _split_of(docs_path, document)
        end = document.first_sentence + document.n_sentences
        splits[split].extend(sentences[document.first_sentence : end])
    return splits


def _split_of(docs_path: Path, document: TreebankDocument) -> str:
    for split, numbers in TREEBANK_SPLITS.items():
        if document.number in numbers:
            return split
    raise DataFormatError(
        f"Invalid docs file {docs_path}, line {document.line}: document "
        f"{document.name} is in no split. Expected wsj_0001 to wsj_0199."
    )
