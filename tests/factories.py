"""Small builders for test data: a list, organisations, members with subscriptions."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from passerelle.models import Category, MailingList, Member, Organisation, Subscription

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def make_list(session: Session, name: str = "forum", *, title: str = "Forum", now: datetime = T0) -> MailingList:
    existing = session.scalar(select(MailingList).where(MailingList.name == name))
    if existing:
        return existing
    ml = MailingList(name=name, title=title, description="", language="fr", created_at=now)
    session.add(ml)
    session.flush()
    return ml


def make_org(session: Session, name: str, country: str = "FR", *, kind: str = "city", border: str = "") -> Organisation:
    org = session.scalar(select(Organisation).where(Organisation.name == name))
    if org:
        return org
    org = Organisation(name=name, country=country, kind=kind, border=border)
    session.add(org)
    session.flush()
    return org


def make_member(
    session: Session,
    email: str,
    *,
    name: str = "",
    mailing_list: MailingList | None = None,
    role: str = "member",
    mode: str = "instant",
    status: str = "active",
    org: Organisation | None = None,
    language: str = "fr",
    timezone: str = "Europe/Paris",
    now: datetime = T0,
) -> tuple[Member, Subscription | None]:
    member = session.scalar(select(Member).where(Member.email == email.lower()))
    if member is None:
        member = Member(
            email=email.lower(), name=name, organisation=org, language=language, timezone=timezone, created_at=now
        )
        session.add(member)
        session.flush()
    sub = None
    if mailing_list is not None:
        sub = Subscription(
            member_id=member.id, list_id=mailing_list.id, role=role, delivery_mode=mode, status=status,
            accepted_posts=10, created_at=now,
        )
        session.add(sub)
        session.flush()
    return member, sub


def make_category(session: Session, mailing_list: MailingList, name: str, *, public_access: str = "titles",
                  now: datetime = T0) -> Category:
    from passerelle.text import slugify

    cat = Category(list_id=mailing_list.id, name=name, slug=slugify(name), public_access=public_access, created_at=now)
    session.add(cat)
    session.flush()
    return cat
