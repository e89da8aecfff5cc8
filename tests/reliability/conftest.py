"""Registers the ``reliability`` marker and marks every test in this package with it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "reliability: crash, fault-injection and hostile-input suite (sized by RELIABILITY_*)",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/reliability/" in str(item.path).replace("\\", "/"):
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A private temporary directory, removed at teardown.

    Not ``tmp_path``: pytest prunes old base directories of *other* sessions by age, which can
    pull a directory from under a chain that runs for minutes next to other test runs.
    """
    with tempfile.TemporaryDirectory(prefix="recruitmail-reliability-") as directory:
        yield Path(directory)
