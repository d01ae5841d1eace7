"""Digests and the other scheduled jobs: APScheduler drives them, the database keeps their state."""
