"""Bounce recognition: RFC 3464 DSNs, vendor plain-text notices, feedback reports. Pure, no I/O.

``parse_bounce(raw, verp_recipient=None) -> BounceReport | None`` is the entry point (see parse.py).
"""

from gateway.bounces.parse import BouncedRecipient, BounceReport, parse_bounce
from gateway.bounces.reasons import HARD_REASONS, REASONS

__all__ = ["HARD_REASONS", "REASONS", "BounceReport", "BouncedRecipient", "parse_bounce"]
