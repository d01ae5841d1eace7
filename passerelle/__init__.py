"""Passerelle: a mailing-list-first discussion forum (shared core)."""

__version__ = "0.1.0"
