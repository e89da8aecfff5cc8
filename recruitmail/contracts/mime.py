"""Turn a ``DraftMessage`` into RFC 5322 bytes, with every header value made safe first.

The Python on our target machines predates the fix for CVE-2024-6923: the ``email`` package would
happily fold a value carrying CR/LF or an encoded word that decodes to a newline into a new header.
So every value that may come from calendar data passes through ``clean_header`` before it gets
near the ``email`` package.
"""

from __future__ import annotations

import base64
import re
import secrets
import sys
import unicodedata
from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.quoprimime import body_check, quote
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
    """The draft as CRLF-terminated RFC 5322 bytes.

    Assembled by hand, in the shape ``build_message(...).as_bytes()`` writes (same headers in
    the same order, a multipart/alternative of a quoted-printable text part and HTML part), at
    a small fraction of its cost: the ``email`` package's header objects and generator were a
    fifth of a first pass. Every value goes through the same sanitising (``clean_header``,
    ``check_address``, ``ascii_domain``) first; non-ASCII text becomes RFC 2047 encoded words
    (a display name one B-encoded word, as the email package writes it; other values Q-encoded
    words of at most 75 characters, split between characters, never inside one).
    ``tests/test_mime.py`` compares the two on hostile names.
    """
    lines = [
        "From: " + _address_text(message.sender),
        "To: " + ", ".join(_address_text(r) for r in message.to),
    ]
    if message.cc:
        lines.append("Cc: " + ", ".join(_address_text(r) for r in message.cc))
    subject = _unstructured(clean_header(message.subject))
    lines.append(f"Subject: {subject}" if subject else "Subject:")
    lines.append("Message-ID: " + _unstructured(message.message_id))
    if message.in_reply_to:
        reference = _unstructured(clean_header(message.in_reply_to))
        lines.append("In-Reply-To: " + reference)
        lines.append("References: " + reference)
    if date is not None:
        lines.append("Date: " + format_datetime(date))
    lines.append(f"{KEY_HEADER}: {message.key.id}")
    if message.categories:
        lines.append(
            "Keywords: " + ", ".join(_unstructured(clean_header(c, 60)) for c in message.categories)
        )
    text = _quoted_printable(message.text)
    html = _quoted_printable(message.html)
    boundary = _boundary(text, html)
    lines += [
        "MIME-Version: 1.0",
        f'Content-Type: multipart/alternative; boundary="{boundary}"',
        "",
        f"--{boundary}",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
        "",
        text,
        f"--{boundary}",
        'Content-Type: text/html; charset="utf-8"',
        "Content-Transfer-Encoding: quoted-printable",
        "MIME-Version: 1.0",
        "",
        html,
        f"--{boundary}--",
        "",
    ]
    return "\r\n".join(lines).encode("ascii")


def _address_text(recipient: Recipient) -> str:
    """``Name <local@domain>`` with the address checked and its domain in IDNA, the name a
    quoted string or encoded words when it needs to be (bare when it is a plain phrase)."""
    address = _address(recipient)
    name = address.display_name
    spec = f"{address.username}@{address.domain}"
    if not name:
        return spec
    if not name.isascii():
        # One encoded word, as the email package writes a display name: readers (Python's
        # among them) keep a space between two encoded words of a phrase that RFC 2047 says to
        # drop. Names are at most 120 characters, so the line stays far below 998 octets.
        name = "=?utf-8?b?" + base64.b64encode(name.encode("utf-8")).decode("ascii") + "?="
    elif not _PHRASE_SAFE.issuperset(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{spec}>"


def _unstructured(value: str) -> str:
    """A header value: as it is when ASCII, else encoded words (the value is clean already:
    one line, at most 250 characters)."""
    return value if value.isascii() else _encoded_words(value)


# Characters a phrase may carry without quoting (RFC 5322 atext and the spaces between words).
_PHRASE_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~ "
)
# What the Q encoding of a phrase word may leave as it is (RFC 2047 §5 (3)); a space is "_".
_Q_SAFE = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!*+-/")
_Q_BYTE = [chr(b) if b in _Q_SAFE else "_" if b == 0x20 else f"={b:02X}" for b in range(256)]
_WORD_START = "=?utf-8?q?"
_WORD_ROOM = 75 - len(_WORD_START) - len("?=")


def _encoded_words(value: str) -> str:
    """``value`` as RFC 2047 Q-encoded words of at most 75 characters, split between
    characters (a multi-byte character is never cut), each on a line of its own (folded: the
    white space between two encoded words is not part of the text, its spaces are inside
    them, so no space is lost, unlike when the email package folds)."""
    words: list[str] = []
    current = ""
    for ch in value:
        piece = "".join(_Q_BYTE[b] for b in ch.encode("utf-8"))
        if len(current) + len(piece) > _WORD_ROOM:
            words.append(f"{_WORD_START}{current}?=")
            current = ""
        current += piece
    words.append(f"{_WORD_START}{current}?=")
    return "\r\n ".join(words)


def _quoted_printable(body: str) -> str:
    """A text body as the ``email`` package encodes it for ``cte="quoted-printable"`` (lines of
    at most 78 characters, "\n" line ends made CRLF, the last one included).

    ``email.quoprimime.body_encode``'s algorithm, with its translation of every character
    through a table (most of its cost) replaced by a substitution of only the characters its
    table changes: the same table, so the same bytes.
    """
    lines = body.encode("utf-8").splitlines()
    text = _QP_UNSAFE.sub(_qp_quote, (b"\n".join(lines) + b"\n").decode("latin-1"))
    room = _UNFOLDED_BODY - 1  # leave space for the "=" of a soft line break
    encoded: list[str] = []
    append = encoded.append
    for line in text.splitlines():
        start = 0
        last_start = len(line) - 1 - _UNFOLDED_BODY
        while start <= last_start:
            stop = start + room
            if line[stop - 2] == "=":  # never split an escape sequence
                append(line[start : stop - 1])
                start = stop - 2
            elif line[stop - 1] == "=":
                append(line[start:stop])
                start = stop - 1
            else:
                append(line[start:stop] + "=")
                start = stop
        if line and line[-1] in " \t":  # white space at the end of a line is quoted
            left = start - last_start
            if left >= 3:
                end = _QP_MAP[ord(line[-1])]
            elif left == 2:
                end = line[-1] + "=\r\n"
            else:
                end = "=\r\n" + _QP_MAP[ord(line[-1])]
            append(line[start:-1] + end)
        else:
            append(line[start:])
    append("")  # the text ends with a line end, which the email package keeps
    return "\r\n".join(encoded)


_UNFOLDED_BODY = 78  # the SMTP policy's line length, as the email package wraps bodies
_QP_MAP = [f"={c:02X}" for c in range(256)]
_QUOPRI_BODY = [chr(c) if c in b"\r\n" or not body_check(c) else quote(chr(c)) for c in range(256)]
"""The email package's table for bodies (``quoprimime``): each character as it is written."""
_QP_UNSAFE = re.compile(
    "[" + re.escape("".join(chr(c) for c in range(256) if _QUOPRI_BODY[c] != chr(c))) + "]"
)
"""The characters the email package's body table quotes (after "\n" is the only line end)."""


def _qp_quote(match: re.Match[str]) -> str:
    return _QUOPRI_BODY[ord(match.group())]


def _boundary(*parts: str) -> str:
    """A multipart boundary found in no part (quoted-printable never writes "==", so the first
    try always does)."""
    while True:
        boundary = "=" * 15 + f"{secrets.randbelow(sys.maxsize):019d}" + "=="
        if not any(boundary in part for part in parts):
            return boundary
