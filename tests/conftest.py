"""Shared pytest fixtures."""

import os

# Set before any test module imports TensorFlow, which reads it at import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

_REPO_ROOT = Path(__file__).resolve().parents[1]

# CI clones the repository next to the shared folder, so it is <root>/../shared.
_DEFAULT_SHARED_DATA = _REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Return the shared data folder, or skip the test when it is absent.

    The folder is ``../shared/data`` relative to the repository root unless
    the environment variable ``LSTMKIT_TEST_DATA`` names another one.
    """
    override = os.environ.get("LSTMKIT_TEST_DATA")
    folder = Path(override) if override else _DEFAULT_SHARED_DATA
    if not folder.is_dir():
        source = "LSTMKIT_TEST_DATA" if override else "the default location"
        pytest.skip(
            f"shared data folder {folder} (from {source}) does not exist. "
            f"Set LSTMKIT_TEST_DATA to the folder that contains mnist/."
        )
    return folder
