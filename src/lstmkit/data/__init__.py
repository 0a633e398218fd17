"""Data loaders that return sequence classification data sets."""

from .dataset import SequenceDataset
from .digits import load_digits
from .locate import DataFormatError, DataNotFoundError, find_data_dir
from .mnist import load_mnist, read_idx

__all__ = [
    "DataFormatError",
    "DataNotFoundError",
    "SequenceDataset",
    "find_data_dir",
    "load_digits",
    "load_mnist",
    "read_idx",
]
