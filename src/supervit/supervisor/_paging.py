"""Paging of the admin listings: opaque tokens and pages that fit in one response.

A token is urlsafe base64 (no padding) of a tag, the last node id of the previous page and a
short checksum, so an edited or made-up token fails loudly (``INVALID_ARGUMENT``) instead of
silently starting somewhere else. Pages follow node ids in code-point order.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from supervit._exceptions import InvalidRequestError

__all__ = ["RESPONSE_BUDGET_BYTES", "decode_node_token", "encode_node_token"]

RESPONSE_BUDGET_BYTES = 3 * 1024 * 1024
"""Bytes of entries one listing response carries at most: well below gRPC's 4 MB send limit."""

_TAG = b"NP1"
_PERSON = b"supervit-nodes"


def _checksum(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=4, person=_PERSON).digest()


def encode_node_token(last_node_id: str) -> str:
    """The token of the page after ``last_node_id``."""
    body = _TAG + last_node_id.encode()
    return base64.urlsafe_b64encode(body + _checksum(body)).decode("ascii").rstrip("=")


def decode_node_token(token: str) -> str:
    """The last node id of the previous page; :class:`InvalidRequestError` if not a token of ours."""
    try:
        raw = base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True)
        body, checksum = raw[:-4], raw[-4:]
        if not body.startswith(_TAG) or checksum != _checksum(body):
            raise ValueError("checksum")
        last = body[len(_TAG) :].decode()
    except (binascii.Error, ValueError):
        raise InvalidRequestError("invalid page_token") from None
    if encode_node_token(last) != token:  # non-canonical base64 spellings
        raise InvalidRequestError("invalid page_token")
    return last
