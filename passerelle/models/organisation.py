"""An organisation of the network (a city, a region, a cross-border body, a state service)."""

from __future__ import annotations

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base


class Organisation(Base):
    __tablename__ = "organisations"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    # ISO 3166-1 alpha-2, upper case ("FR", "DE", "LU").
    country: Mapped[str] = mapped_column(String(2), index=True)
    # "city", "region", "cross-border body", "state service", "expert", ...
    kind: Mapped[str] = mapped_column(String(40), default="")
    # The border the organisation works on, as sorted country codes ("DE-FR"); empty when none.
    border: Mapped[str] = mapped_column(String(20), default="", index=True)
