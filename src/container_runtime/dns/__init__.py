"""The embedded DNS server (`container-dns`, see server.py) and its control helper.

Only `notify_dns` is exported here; it is stdlib-only so the API server can call it
without importing the server.
"""

from .control import notify_dns

__all__ = ["notify_dns"]
