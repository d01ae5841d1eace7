"""Fixtures of the mail-core tests: corpus access and a way to print measured figures."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests import corpus_dir


@pytest.fixture(scope="session")
def corpus() -> Path:
    return corpus_dir()


@pytest.fixture
def report(record_property: Callable[[str, object], None], capsys: pytest.CaptureFixture[str]):
    """``report(name, value)``: record a measured figure in the JUnit properties and print it to the
    terminal even without ``-s`` (these numbers are the point of the corpus tests)."""

    def _report(name: str, value: object) -> None:
        record_property(name, value)
        with capsys.disabled():
            print(f"\n[mail-corpus] {name}: {value}")

    return _report


def corpus_folder(corpus: Path, name: str) -> Path:
    folder = corpus / name
    if not folder.is_dir():
        pytest.fail(f"corpus folder {folder} is missing: restore ../shared/corpus/{name}")
    return folder
