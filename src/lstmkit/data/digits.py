"""scikit-learn's 8x8 digits as sequences: 8 time steps of 8 pixels each.

The data (1,797 images) ships with scikit-learn, so it needs no download.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn import datasets
from sklearn.model_selection import train_test_split

from .dataset import SequenceDataset

logger = logging.getLogger(__name__)

DIGITS_NUM_CLASSES = 10
DIGITS_TEST_FRACTION = 0.2

# Pixels in the scikit-learn digits are counts from 0 to 16.
_DIGITS_MAX_PIXEL = 16.0


def load_digits(seed: int = 0) -> SequenceDataset:
    """Load scikit-learn's digits with a stratified 80/20 train/test split.

    Args:
        seed: Random state of the split. The same seed always gives the
            same split.

    Returns:
        The data set: x float32 ``[n, 8, 8]`` (8 time steps of 8 features)
        with pixels scaled to ``[0, 1]``, y int64 ``[n]`` with digits 0 to 9,
        1,437 training and 360 test examples.
    """
    digits = datasets.load_digits()
    x = digits.images.astype(np.float32) / np.float32(_DIGITS_MAX_PIXEL)
    y = digits.target.astype(np.int64)

    x_train, x_test, y_train, y_test = train_test_split(
        x,
        y,
        test_size=DIGITS_TEST_FRACTION,
        stratify=y,
        random_state=seed,
    )

    source = (
        f"sklearn.datasets.load_digits (bundled with scikit-learn), "
        f"stratified 80/20 split with seed {seed}"
    )
    logger.info(
        "Loaded digits from %s: %d train, %d test examples",
        source,
        len(x_train),
        len(x_test),
    )
    return SequenceDataset(
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        num_classes=DIGITS_NUM_CLASSES,
        name="digits",
        source=source,
    )
