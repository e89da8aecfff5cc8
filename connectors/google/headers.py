"""What a draft of ours carries and how it is read back: the raw message, the content digest, our
bookkeeping headers, the Message-ID of a key, and the remote id (``_Ref``) the ledger keeps.

No I/O here: these are the words ``mail`` writes and ``state`` reads.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.utils import getaddresses
from typing import Any

from recruitmail.contracts.models import normalise_address

DIGEST_HEADER = "X-Recruitmail-Content"
"""Carries ``content_digest`` of the draft as written, so an adopted draft can be checked too."""
CREATED_HEADER = "X-Recruitmail-Created"
"""When the draft was written (epoch ms): sent mail after it may be the edited draft, sent."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def content_digest(raw: bytes) -> str:
    """A digest of what a reader sees in a mail: recipients, subject, text and HTML parts.

    Header order, transfer encoding and headers Gmail adds do not change it; any edit does.
    """
    mail = message_from_bytes(raw, policy=policy.default)
    parts = [
        ",".join(a for _, a in getaddresses([str(v) for v in mail.get_all("To", [])])).lower(),
        ",".join(a for _, a in getaddresses([str(v) for v in mail.get_all("Cc", [])])).lower(),
        str(mail.get("Subject", "")),
    ]
    for kind in ("plain", "html"):
        body = mail.get_body(preferencelist=(kind,))
        content = body.get_content() if body is not None else ""
        parts.append(content.replace("\r\n", "\n").strip() if isinstance(content, str) else "")
    return hashlib.sha256("\x00".join(parts).encode("utf-8")).hexdigest()[:32]


def _bare(message_id: str) -> str:
    return message_id.strip().strip("<>")


@dataclass(frozen=True)
class _Ref:
    """``DraftRef.remote_id``: ``DRAFT:THREAD:KEY:CREATED_MS:RECIPIENT`` (older refs have the
    first three only). The recipient is a digest, never the address."""

    draft_id: str
    thread_id: str
    key_id: str
    created_ms: int = 0
    recipient: str = ""

    @classmethod
    def of(cls, draft: Mapping[str, Any], key_id: str, created_ms: int, recipient: str) -> _Ref:
        message = draft.get("message") or {}
        return cls(str(draft.get("id", "")), str(message.get("threadId", "")), key_id,
                   created_ms, recipient)  # fmt: skip

    @classmethod
    def parse(cls, remote_id: str) -> _Ref:
        parts = (remote_id.split(":") + ["", "", "", ""])[:5]
        try:
            created = int(parts[3] or "0")
        except ValueError:
            created = 0
        return cls(parts[0], parts[1], parts[2], created, parts[4])

    def text(self) -> str:
        return ":".join(
            [self.draft_id, self.thread_id, self.key_id, str(self.created_ms or ""), self.recipient]
        ).rstrip(":")


def _recipient_digest(address: str) -> str:
    return hashlib.sha256(normalise_address(address).encode("utf-8")).hexdigest()[:20]


def _recipient_digest_of(mail: Any) -> str:
    addresses = [a for _, a in getaddresses([str(v) for v in mail.get_all("To", [])]) if a]
    return _recipient_digest(addresses[0]) if addresses else ""


def _written_created(mail: Any) -> int:
    try:
        return int(str(mail.get(CREATED_HEADER, "0")).strip() or "0")
    except ValueError:
        return 0


def _message_id_of(key_id: str, mailbox: str) -> str:
    domain = mailbox.rpartition("@")[2] or "recruitmail.invalid"
    return f"<rm-{key_id}@{domain}>"


def _header(message: Mapping[str, Any], name: str) -> str:
    """A header of a ``format=metadata`` message resource ("" when absent)."""
    for h in (message.get("payload") or {}).get("headers") or []:
        if str(h.get("name", "")).lower() == name.lower():
            return str(h.get("value", ""))
    return ""


def _written_digest(raw: bytes) -> str:
    """The digest recorded in the draft when we wrote it ("" when a mail client dropped it)."""
    mail = message_from_bytes(raw, policy=policy.default)
    return str(mail.get(DIGEST_HEADER, "")).strip()
