"""Test package. ``corpus_dir()`` locates the shared real-mail corpus (../shared/corpus from the project root)."""

from __future__ import annotations

from pathlib import Path


def corpus_dir() -> Path:
    """Absolute path of the read-only real-mail corpus, ``<project root>/../shared/corpus``.

    Fails loudly (never skips) when it is missing: the tests that need it are meaningless without it.
    """
    path = (Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus").resolve()
    if not path.is_dir():
        raise FileNotFoundError(
            f"mail corpus not found at {path}: the tests read real mail from ../shared/corpus next to the "
            "project checkout (CI and every developer machine have it); restore shared/ beside the repo"
        )
    return path
