"""Turn a ``DraftMessage`` into RFC 5322 bytes, with every header value made safe first.

The Python on our target machines predates the fix for CVE-2024-6923: the ``email`` package would
happily fold a value carrying CR/LF or an encoded word that decodes to a newline into a new header.
So every value that may come from calendar data passes through ``clean_header`` before it gets
near the ``email`` package.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

import idna

from recruitmail.contracts.connector import KEY_HEADER
from recruitmail.contracts.errors import PermanentError
from recruitmail.contracts.models import DraftMessage, Recipient, normalise_address, pseudonym

MAX_HEADER_CHARS = 250

_ADDRESS = re.compile(r"^[^\s@<>()\[\],;:\"\\]+@[^\s@<>()\[\],;:\"\\]+\.[^\s@<>()\[\],;:\"\\]+$")


def clean_header(value: str, limit: int = MAX_HEADER_CHARS) -> str:
    """One line of plain text: no control or bidi-override characters, no encoded-word syntax."""
    text = unicodedata.normalize("NFC", value)
    text = "".join(" " if _is_unsafe(ch) else ch for ch in text)
    # "=?charset?q?…?=" in a raw value is an attempt to smuggle an encoded word; break the syntax.
    text = text.replace("=?", "= ?").replace("?=", "? =")
    text = " ".join(text.split())
    if len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return text


def _is_unsafe(ch: str) -> bool:
    category = unicodedata.category(ch)
    return category in ("Cc", "Cf", "Zl", "Zp") or ch in "\u2028\u2029"


def check_address(address: str) -> str:
    """Return ``address`` when it is a plain, single mail address; else raise ``PermanentError``
    (whose message never holds the address: it may be a candidate's)."""
    if not _ADDRESS.match(address) or any(_is_unsafe(ch) for ch in address):
        raise PermanentError(f"not a usable mail address ({pseudonym(address)})")
    return address


def ascii_domain(domain: str) -> str:
    """A domain as it goes into an address header: IDNA (punycode) labels, no final dot.

    ``exämple.se`` becomes ``xn--exmple-cua.se``; the ``email`` package would otherwise write it
    as an encoded word, which is not valid inside an address and which mail clients reject.
    """
    name = unicodedata.normalize("NFC", domain).strip().rstrip(".")
    if name.isascii():
        return name.lower()
    try:
        return idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError:
        try:
            return name.encode("idna").decode("ascii")  # IDNA 2003, for names 2008 refuses
        except UnicodeError:
            raise PermanentError(
                f"not a usable mail domain ({pseudonym('x@' + name)}): it cannot be written as IDNA"
            ) from None


def address_key(address: str) -> str:
    """One spelling of an address for comparing people across calendar and mailbox (so
    ``anna@xn--exmple-cua.se.`` and ``Anna@exämple.se`` are the same person): the project's
    normal form, which already reads an IDNA domain back as Unicode and drops a final dot."""
    return normalise_address(address)


def _address(recipient: Recipient) -> Address:
    addr = check_address(recipient.address.strip())
    local, _, domain = addr.rpartition("@")
    if not local.isascii():
        # An internationalised local part needs SMTPUTF8 end to end; as an encoded word it would
        # be an invalid address. Refused clearly rather than written broken.
        raise PermanentError(
            f"the address {pseudonym(addr)} has a non-ASCII local part, which drafts cannot carry"
        )
    # The display name stays Unicode: the email package writes it as a proper encoded word.
    return Address(
        display_name=clean_header(recipient.name, 120), username=local, domain=ascii_domain(domain)
    )


def build_message(message: DraftMessage, date: datetime | None = None) -> EmailMessage:
    """A multipart/alternative draft (text, then HTML) carrying the key in Message-ID and a header."""
    mail = EmailMessage(policy=SMTP)
    mail["From"] = _address(message.sender)
    mail["To"] = [_address(r) for r in message.to]
    if message.cc:
        mail["Cc"] = [_address(r) for r in message.cc]
    mail["Subject"] = clean_header(message.subject)
    mail["Message-ID"] = message.message_id
    if message.in_reply_to:
        reference = clean_header(message.in_reply_to)
        mail["In-Reply-To"] = reference
        mail["References"] = reference
    if date is not None:
        mail["Date"] = format_datetime(date)
    mail[KEY_HEADER] = message.key.id
    if message.categories:
        mail["Keywords"] = ", ".join(clean_header(c, 60) for c in message.categories)
    mail.set_content(message.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    mail.add_alternative(message.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return mail


# The email package on Python 3.11 drops the space between two encoded words when it folds a
# long non-ASCII subject ("AB – måndag" came back as "AB –måndag"). Header lines are therefore
# written unfolded (they stay far below the 998-octet limit); bodies are quoted-printable already.
_UNFOLDED = SMTP.clone(max_line_length=None)


def to_bytes(message: DraftMessage, date: datetime | None = None) -> bytes:
    """The draft as CRLF-terminated RFC 5322 bytes."""
    return build_message(message, date).as_bytes(policy=_UNFOLDED)
