"""What a rule returns: a decision and a reason a person can read (operators, moderators, the sender)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.context import MailContext

# drop: not posted, nothing else to do (loops, auto-replies, mail to the bounce address that is no bounce).
# bounce: a delivery failure report: scored, never posted. command: mail to LIST-request / LIST+cmd.
# owner: mail for the humans running the list: forwarded to them. hold: waits for a moderator.
# refuse: not posted, the sender is told why.
KINDS = ("drop", "bounce", "command", "owner", "hold", "refuse")


@dataclass(frozen=True)
class Decision:
    kind: str
    reason: str
    # Whatever the handler needs beyond the reason (the parsed bounce report for "bounce").
    data: Any = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown decision kind {self.kind!r}; expected one of {KINDS}")


Rule = Callable[[MailContext], Decision | None]
