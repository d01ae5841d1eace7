"""The Flask web archive: read, search, sign in, account, moderation, feeds, operators' status.

``create_app(settings, *, session_factory=None, clock=None)`` builds the application; see archive_web.app.
"""

from .app import BLUEPRINTS, NavItem, create_app

__all__ = ["BLUEPRINTS", "NavItem", "create_app"]
