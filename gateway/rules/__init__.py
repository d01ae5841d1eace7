"""The rules, in the order they are asked. Each is a pure function ``(ctx) -> Decision | None``; the first
decision wins; when every rule says None the message is a post (gateway.worker then places it in a thread
and runs the posting steps).

Order matters: a loop must be caught before anything answers it; a bounce before the auto-reply check
(bounces are often auto-submitted too, and must be scored, not just dropped); commands and owner mail
before membership (strangers may subscribe and write to the owners); an empty post before membership too (a
stranger's blank mail is answered "nothing was posted", not queued for a moderator to look at nothing).
"""

from __future__ import annotations

from gateway.context import MailContext

from .autoreply import autoreply_rule
from .base import KINDS, Decision, Rule
from .bounce import bounce_rule
from .empty import empty_rule
from .loop import loop_rule
from .membership import membership_rule
from .owner import owner_rule
from .request import request_rule
from .size import size_rule

RULES: tuple[Rule, ...] = (
    loop_rule,
    bounce_rule,
    autoreply_rule,
    size_rule,
    owner_rule,
    request_rule,
    empty_rule,
    membership_rule,
)


def decide(ctx: MailContext, rules: tuple[Rule, ...] = RULES) -> Decision | None:
    """The first rule's decision, or None: post it."""
    for rule in rules:
        decision = rule(ctx)
        if decision is not None:
            return decision
    return None


__all__ = ["KINDS", "RULES", "Decision", "Rule", "decide"]
