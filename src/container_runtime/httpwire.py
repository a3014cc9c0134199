"""The one HTTP/1.1 message parser of the project, shared by both servers and the client.

Strict on purpose: our peers are our own client and servers, so anything outside the
small subset they speak is refused with a status (`HttpError`) instead of guessed at.
Heads end with CRLF CRLF; bodies come with one Content-Length (no chunked coding).
Stdlib only and cheap to import: the CLI imports it.  A hand parser rather than h11:
measured 4-5x faster per request (docs/BENCHMARKS.md), and the helper's hot path is
one request per allocation.
"""

from __future__ import annotations

import re  # already loaded by json and argparse: free for the CLI

MAX_HEAD = 16 * 1024  # request line + headers
MAX_HEADERS = 100
MAX_BODY = 1 << 20  # a request body; larger ones get 413 before a byte of it is read
MAX_REPLY_BODY = 1 << 30  # a response body the client accepts (trusted servers)

# bytes.translate(None, chars) deletes `chars` at C speed: "only these bytes" checks.
_TCHAR = b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGITS = b"0123456789"
_VISIBLE = bytes(range(0x21, 0x7F))
# Header values: visible ASCII, SP, HTAB and obs-text; no CR, LF, NUL or other controls.
_VALUE_BAD = bytes([*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F])

_T = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_V = rb"[\t\x20-\x7e\x80-\xff]"
_FIELD = _T + rb":" + _V + rb"*\r\n"
_REQUEST = re.compile(
    rb"(" + _T + rb") (/[\x21-\x7e]*) HTTP/1\.([01])\r\n((?:" + _FIELD + rb")*)\r\n"
)
_RESPONSE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3}) (" + _V + rb"*)\r\n((?:" + _FIELD + rb")*)\r\n")
# Greedy value, trailing blanks stripped in Python: a lazy `*?` before `[ \t]*` is
# quadratic on a value full of blanks (a 16 KiB one took 0.85 s).
_FIELD_PARTS = re.compile(rb"(" + _T + rb"):[ \t]*(" + _V + rb"*)\r\n")

REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
    507: "Insufficient Storage",
}


class HttpError(Exception):
    """A message that cannot be served: answer `status` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Head:
    """A parsed request head (method, target) or response head (status, reason in
    target).  A plain class: dataclasses costs the CLI ~15 ms of imports."""

    __slots__ = ("method", "target", "status", "headers", "length", "keep_alive", "size")

    def __init__(
        self,
        *,
        method: str,
        target: str,
        status: int,
        headers: dict[str, str],  # lower-case names
        length: int,  # Content-Length (0 when absent)
        keep_alive: bool,
        size: int,  # bytes of the head including the final CRLF CRLF
    ) -> None:
        self.method = method
        self.target = target
        self.status = status
        self.headers = headers
        self.length = length
        self.keep_alive = keep_alive
        self.size = size


def is_token(data: bytes) -> bool:
    return bool(data) and not data.translate(None, _TCHAR)


def valid_target(target: bytes | str) -> bool:
    """An origin-form target: starts with '/', visible ASCII only (no space or control)."""
    raw = target.encode("latin-1", "replace") if isinstance(target, str) else target
    return raw[:1] == b"/" and not raw.translate(None, _VISIBLE)


def head_end(buffer: bytes | bytearray, max_head: int = MAX_HEAD, scanned: int = 0) -> int:
    """Index just past the head's CRLF CRLF, 0 if not complete yet; HttpError(431) when the
    head is already too long to ever be accepted.  `scanned`: bytes already searched (a
    head that trickles in is not searched from its start at every byte)."""
    end = buffer.find(b"\r\n\r\n", max(0, scanned - 3), max_head + 4)
    if end >= 0:
        return end + 4
    if len(buffer) > max_head:
        raise HttpError(431, f"request head larger than {max_head} bytes")
    return 0


def _split_fields(lines: list[bytes]) -> list[tuple[bytes, bytes]]:
    """The careful path: header lines one by one, with a precise error for a bad one."""
    if len(lines) > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} header fields")
    pairs = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not is_token(name):
            # includes obs-fold (a line starting with SP/HTAB) and space before the colon
            raise HttpError(400, "malformed header field")
        value = value.strip(b" \t")
        if len(value.translate(None, _VALUE_BAD)) != len(value):
            raise HttpError(400, "control character in a header value")
        pairs.append((name, value))
    return pairs


def _fields(pairs: list[tuple[bytes, bytes]]) -> tuple[dict[str, str], int]:
    """Header fields (syntax already checked) as a dict, and the body length."""
    if len(pairs) > MAX_HEADERS:
        raise HttpError(431, f"more than {MAX_HEADERS} header fields")
    headers: dict[str, str] = {}
    length: int | None = None
    for name, value in pairs:
        value = value.rstrip(b" \t")
        key = name.decode("ascii").lower()
        text = value.decode("latin-1")
        if key == "content-length":
            if not value or len(value) > 18 or value.translate(None, _DIGITS):
                raise HttpError(400, f"invalid Content-Length {text[:40]!r}")
            if length is not None and int(value) != length:
                raise HttpError(400, "conflicting Content-Length fields")
            length = int(value)
        elif key in headers:
            headers[key] += ", " + text
            continue
        headers[key] = text
    if "transfer-encoding" in headers:
        raise HttpError(501, "Transfer-Encoding is not supported: send a Content-Length")
    return headers, length or 0


def _keep_alive(version: bytes, headers: dict[str, str]) -> bool:
    connection = headers.get("connection")
    tokens = {t.strip().lower() for t in connection.split(",")} if connection else set()
    if version == b"HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def parse_request_head(data: bytes | bytearray, max_body: int = MAX_BODY) -> Head:
    """Parse a complete head (as delimited by `head_end`); HttpError if it is not valid.

    One regular expression (C speed) recognises a valid head; only a head it refuses
    goes through the line-by-line path, which says what is wrong with it."""
    text = bytes(data)
    if text[:2] == b"\r\n":
        text = text.lstrip(b"\r\n")  # RFC 9112 2.2: ignore empty lines before a request
    match = _REQUEST.fullmatch(text)
    if match is None:
        method, target, version, pairs = _request_slow(text)
    else:
        method, target, minor, block = match.groups()
        version = b"HTTP/1." + minor
        pairs = _FIELD_PARTS.findall(block)
    headers, length = _fields(pairs)
    if length > max_body:
        raise HttpError(413, f"request body of {length} bytes is larger than {max_body}")
    return Head(
        method=method.decode("ascii"),
        target=target.decode("ascii"),
        status=0,
        headers=headers,
        length=length,
        keep_alive=_keep_alive(version, headers),
        size=len(data),
    )


def _request_slow(text: bytes) -> tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]]:
    lines = text[:-4].split(b"\r\n") if text.endswith(b"\r\n\r\n") else []
    if not lines or not lines[0]:
        raise HttpError(400, "empty request")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise HttpError(400, "malformed request line")
    method, target, version = parts
    if not is_token(method):
        raise HttpError(400, "malformed method")
    if not valid_target(target):
        raise HttpError(400, "malformed request target")
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        if version.startswith(b"HTTP/") and len(version) == 8:
            raise HttpError(505, "only HTTP/1.1 is served")
        raise HttpError(400, "malformed HTTP version")
    return method, target, version, _split_fields(lines[1:])


def parse_response_head(data: bytes | bytearray) -> Head:
    """Parse a complete response head; HttpError if it is not valid."""
    text = bytes(data)
    match = _RESPONSE.fullmatch(text)
    if match is None:
        version, code, reason, pairs = _response_slow(text)
    else:
        minor, code, reason, block = match.groups()
        version = b"HTTP/1." + minor
        pairs = _FIELD_PARTS.findall(block)
    headers, length = _fields(pairs)
    if length > MAX_REPLY_BODY:
        raise HttpError(400, f"reply body of {length} bytes is too large")
    return Head(
        method="",
        target=reason.decode("latin-1"),
        status=int(code),
        headers=headers,
        length=length,
        keep_alive=_keep_alive(version, headers),
        size=len(text),
    )


def _response_slow(text: bytes) -> tuple[bytes, bytes, bytes, list[tuple[bytes, bytes]]]:
    lines = text[:-4].split(b"\r\n") if text.endswith(b"\r\n\r\n") else []
    if not lines:
        raise HttpError(400, "malformed reply")
    version, _, rest = lines[0].partition(b" ")
    code, _, reason = rest.partition(b" ")
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or len(code) != 3 or code.translate(None, _DIGITS):
        raise HttpError(400, f"malformed status line {lines[0][:60]!r}")
    return version, code, reason, _split_fields(lines[1:])


def encode_request(method: str, target: str, body: bytes | None) -> bytes:
    """A request as our client sends it; ValueError for a method or target that could
    smuggle a second request or header (control characters, spaces, non-ASCII)."""
    if not is_token(method.encode("latin-1", "replace")):
        raise ValueError(f"invalid method {method!r}")
    if not valid_target(target):
        raise ValueError(
            f"invalid request path {target!r}: it must start with '/' and contain no "
            "spaces, control or non-ASCII characters (percent-encode names)"
        )
    head = f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n"
    if body is not None:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        return head.encode("ascii") + body
    return (head + "Content-Length: 0\r\n\r\n").encode("ascii")


def encode_response(status: int, body: bytes, close: bool = False) -> bytes:
    head = (
        f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    )
    if close:
        head += "Connection: close\r\n"
    return head.encode("ascii") + b"\r\n" + body
