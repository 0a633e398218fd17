"""Data loaders for sequence classification and sequence tagging data sets."""

from .conll import chunk_f1, chunks, load_conll2000, read_conll
from .dataset import SequenceDataset
from .digits import load_digits
from .locate import DataFormatError, DataNotFoundError, find_data_dir
from .mnist import load_mnist, read_idx
from .sequences import (
    PAD_ID,
    UNK_ID,
    TaggedSentence,
    TaggingDataset,
    VariableLengthDataset,
    Vocabulary,
    bucket_batches,
    pad_batch,
)
from .treebank import load_treebank_pos, read_word_tag
from .vowels import load_vowels, read_ts

__all__ = [
    "PAD_ID",
    "UNK_ID",
    "DataFormatError",
    "DataNotFoundError",
    "SequenceDataset",
    "TaggedSentence",
    "TaggingDataset",
    "VariableLengthDataset",
    "Vocabulary",
    "bucket_batches",
    "chunk_f1",
    "chunks",
    "find_data_dir",
    "load_conll2000",
    "load_digits",
    "load_mnist",
    "load_treebank_pos",
    "load_vowels",
    "pad_batch",
    "read_conll",
    "read_idx",
    "read_ts",
    "read_word_tag",
]
