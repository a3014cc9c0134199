"""The network plugin SDK (beginning): the helper protocol's version and its typed,
validated request and response types (protocol.py), and its JSON schema
(protocol.json).  The protocol itself is described in docs/PLUGINS.md.
"""

from .protocol import (
    PROTOCOL_VERSION,
    AttachmentReply,
    AttachRequest,
    ErrorReply,
    NetworkReply,
    PortForward,
    PortForwardsRequest,
    ProtocolError,
    StatusReply,
    check_protocol,
    schema,
)

__all__ = [
    "PROTOCOL_VERSION",
    "AttachRequest",
    "AttachmentReply",
    "ErrorReply",
    "NetworkReply",
    "PortForward",
    "PortForwardsRequest",
    "ProtocolError",
    "StatusReply",
    "check_protocol",
    "schema",
]
