"""The SQLAlchemy models, one per module; importing this package registers them all on Base.metadata."""

from .attachment import Attachment
from .base import Base, UTCDateTime
from .bounce import BounceEvent
from .category import Category
from .confirmation import PendingConfirmation
from .digest_run import DigestRun
from .escalation import Escalation, EscalationNote
from .follow import CategoryFollow, TopicFollow
from .held import HeldMessage
from .imap_cursor import ImapCursor
from .inbound import InboundMessage
from .login_token import LoginToken
from .mailing_list import MailingList
from .member import Member
from .message import Message
from .moderation_log import ModerationAction
from .organisation import Organisation
from .outbox import OutboxMessage
from .sheet import Sheet, SheetVersion
from .subscription import Subscription
from .tag import Tag, topic_tags
from .thread_ref import ThreadRef
from .topic import Topic

__all__ = [
    "Attachment",
    "Base",
    "BounceEvent",
    "Category",
    "CategoryFollow",
    "DigestRun",
    "Escalation",
    "EscalationNote",
    "HeldMessage",
    "ImapCursor",
    "InboundMessage",
    "LoginToken",
    "MailingList",
    "Member",
    "Message",
    "ModerationAction",
    "Organisation",
    "OutboxMessage",
    "PendingConfirmation",
    "Sheet",
    "SheetVersion",
    "Subscription",
    "Tag",
    "ThreadRef",
    "Topic",
    "TopicFollow",
    "UTCDateTime",
    "topic_tags",
]
