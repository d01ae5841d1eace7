"""Thread placement, unit rules and real-list measurements."""

from __future__ import annotations

import gzip
import json
import re
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from passerelle.mail.parse import parse_message
from passerelle.mail.threading import MemoryThreadIndex, Placement, Threader
from tests.mail.conftest import corpus_folder

T0 = datetime(2026, 2, 2, 9, 0, tzinfo=UTC)


def _add(
    index: MemoryThreadIndex,
    threader: Threader,
    mid: str,
    irt=(),
    refs=(),
    subject="topic",
    *,
    reply: bool = False,
    date: datetime = T0,
) -> tuple[int, Placement]:
    placement = threader.place(mid, list(irt), list(refs), subject, date, subject_is_reply=reply)
    return index.record(placement, mid, subject, date), placement


def test_in_reply_to_then_last_known_reference() -> None:
    index = MemoryThreadIndex()
    threader = Threader(index)
    root, _ = _add(index, threader, "a@x")
    other, _ = _add(index, threader, "z@x", subject="other")
    topic, placement = _add(index, threader, "b@x", irt=["a@x"], refs=["z@x"])
    assert topic == root and placement.parent_message_id == "a@x" and placement.reason == "in-reply-to"
    topic, placement = _add(index, threader, "c@x", refs=["a@x", "z@x", "missing@x"])
    assert topic == other and placement.parent_message_id == "z@x" and placement.reason == "references"
    assert placement.ghost_ids == ["missing@x"]


def test_ghosts_gather_later_messages_and_the_late_parent() -> None:
    index = MemoryThreadIndex()
    threader = Threader(index)
    first, placement = _add(index, threader, "reply1@x", irt=["lost-root@x"])
    assert placement.topic_key is None and placement.ghost_ids == ["lost-root@x"]
    second, placement = _add(index, threader, "reply2@x", refs=["lost-root@x"])
    assert second == first and placement.parent_message_id == "lost-root@x"
    late, placement = _add(index, threader, "lost-root@x")
    assert late == first and placement.reason == "known-id"
    assert not index.is_ghost("lost-root@x")


def test_subject_fallback_only_for_replies_without_references_within_the_window() -> None:
    index = MemoryThreadIndex()
    threader = Threader(index, subject_window=timedelta(days=30))
    root, _ = _add(index, threader, "a@x", subject="Frontière fermée", date=T0)
    topic, placement = _add(index, threader, "b@x", subject="FRONTIÈRE FERMÉE", reply=True, date=T0 + timedelta(days=5))
    assert topic == root and placement.reason == "subject"
    # Not a reply (no Re:): a new topic even with the same subject.
    topic, _ = _add(index, threader, "c@x", subject="Frontière fermée", date=T0 + timedelta(days=6))
    assert topic != root
    # Has a reference (unknown): no subject matching by default.
    topic, placement = _add(index, threader, "d@x", refs=["nowhere@x"], subject="Frontière fermée", reply=True)
    assert placement.reason == "new"
    # Outside the window (counted from the last activity of the topic).
    later = T0 + timedelta(days=6 + 31)
    topic, placement = _add(index, threader, "e@x", subject="Frontière fermée", reply=True, date=later)
    assert placement.reason == "new"


def test_subject_fallback_with_unknown_references_is_an_option() -> None:
    index = MemoryThreadIndex()
    threader = Threader(index, subject_when_refs_unknown=True)
    root, _ = _add(index, threader, "a@x", subject="Ponts")
    topic, placement = _add(index, threader, "b@x", refs=["elsewhere@x"], subject="Ponts", reply=True)
    assert topic == root and placement.reason == "subject" and placement.ghost_ids == ["elsewhere@x"]


def test_self_references_duplicates_and_empty_ids_are_harmless() -> None:
    index = MemoryThreadIndex()
    threader = Threader(index)
    topic, placement = _add(index, threader, "a@x", irt=["a@x", ""], refs=["a@x", "a@x"])
    assert placement == Placement(None, None, [], "new")
    again, placement = _add(index, threader, "b@x", irt=["b@x"], refs=["b@x", "a@x", "a@x"])
    assert again == topic and placement.ghost_ids == []


def test_place_message_uses_the_parsed_fields() -> None:
    index = MemoryThreadIndex()
    threader = Threader(index)
    first = parse_message(
        b"From: a@x.example\nMessage-ID: <1@x>\nSubject: Ponts\nDate: Mon, 2 Feb 2026 10:00 +0100\n\nx"
    )
    reply = parse_message(b"From: b@x.example\nMessage-ID: <2@x>\nSubject: Re: Ponts\n\ny")
    topic, _ = index.add(threader, first, fallback_date=T0)
    again, placement = index.add(threader, reply, fallback_date=T0 + timedelta(hours=2))
    assert again == topic and placement.reason == "subject"


def _fedora_messages(corpus) -> list[bytes]:
    folder = corpus_folder(corpus, "jwzthreading-fedora-devel")
    data = gzip.decompress((folder / "jwzthreading/tests/data/fedora-devel-mailman/2010-January.txt.gz").read_bytes())
    return re.split(rb"\n(?=From \S+ {1,2}\w{3} \w{3} +\d+ [\d:]+ \d{4}\n)", data)


def _share_right(topics: dict[int, object], expected_root: dict[int, int]) -> float:
    """A message is right when it shares its topic with its expected thread's root and with no message
    of another expected thread."""
    roots_in_topic: dict[object, set[int]] = defaultdict(set)
    for number, topic in topics.items():
        roots_in_topic[topic].add(expected_root[number])
    right = sum(
        topics[n] == topics[expected_root[n]] and roots_in_topic[topics[n]] == {expected_root[n]} for n in topics
    )
    return right / len(topics)


def test_fedora_devel_threads(corpus, report) -> None:
    messages = _fedora_messages(corpus)
    expected = json.loads(
        (corpus_folder(corpus, "jwzthreading-fedora-devel") / "expected_threads_from_mhonarc.json").read_text()
    )
    expected_root: dict[int, int] = {}

    def walk(node: dict, root: int) -> None:
        expected_root[node["msg"]] = root
        for child in node["children"]:
            walk(child, root)

    for thread in expected["threads"]:
        walk(thread, thread["msg"])
    assert len(messages) == len(expected_root) == 292
    results = {}
    for option in (False, True):
        index = MemoryThreadIndex()
        threader = Threader(index, subject_when_refs_unknown=option)
        topics = {}
        for number, raw in enumerate(messages):  # mbox order: the order the list received them
            topics[number], _ = index.add(threader, parse_message(raw), fallback_date=datetime(2010, 1, 1, tzinfo=UTC))
        results[option] = _share_right(topics, expected_root)
    report(
        "fedora-devel messages in the right thread",
        f"{results[False]:.1%} (with subject_when_refs_unknown: {results[True]:.1%})",
    )
    assert results[False] >= 0.98


def _dovecot_groups(response: str) -> list[set[int]]:
    groups, depth, current = [], 0, []
    for token in re.findall(r"\(|\)|\d+", response.split(None, 2)[2]):
        if token == "(":
            depth += 1
            if depth == 1:
                current = []
        elif token == ")":
            depth -= 1
            if depth == 0:
                groups.append(set(current))
        else:
            current.append(int(token))
    return groups


def test_dovecot_imaptest_threading(corpus, report) -> None:
    """RFC 5256 edge cases. Expected misses, by design: ORDEREDSUBJECT groups every equal subject
    (we join by subject only replies without references), a reference loop is broken differently,
    duplicate Message-IDs are deduplicated by the gateway before threading."""
    root = corpus_folder(corpus, "dovecot-imaptest-threading") / "src" / "tests"
    scripts = sorted(p for p in root.iterdir() if not p.suffix)
    assert len(scripts) >= 10
    right = total = 0
    for script in scripts:
        lines = script.read_text().splitlines()
        appends = 0
        response = None
        for i, line in enumerate(lines):
            if line.startswith("ok append"):
                appends += 1
            if line.lower().startswith("ok thread"):
                response = next(x for x in lines[i + 1 :] if x.startswith("*"))
                break
        assert response is not None, script
        raws = [
            m for m in re.split(rb"(?:^|\n)(?=From \S+ )", (root / f"{script.name}.mbox").read_bytes()) if m.strip()
        ]
        if any(line.startswith("state: created") for line in lines):
            raws = raws[:appends]
        expected = {n: group for group in _dovecot_groups(response) for n in group}
        index = MemoryThreadIndex()
        threader = Threader(index)
        topics = {}
        for number, raw in enumerate(raws, 1):
            topics[number], _ = index.add(threader, parse_message(raw), fallback_date=datetime(2008, 2, 22, tzinfo=UTC))
        for number, topic in topics.items():
            ours = {n for n, t in topics.items() if t == topic}
            right += ours == expected.get(number, {number})
            total += 1
    report("dovecot imaptest messages in the right thread", f"{right}/{total} = {right / total:.0%}")
    assert right / total >= 0.58
