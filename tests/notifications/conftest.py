"""The local receivers (tests/notifications/servers.py) as fixtures for every test here."""

from tests.notifications.servers import http_receiver, smtp_receiver

__all__ = ["http_receiver", "smtp_receiver"]
