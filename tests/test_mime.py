"""Address headers of drafts: international domains, display names and what error messages say."""

from __future__ import annotations

import email
import email.header
import email.policy
import re
from dataclasses import replace
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest

from recruitmail.contracts.errors import PermanentError
from recruitmail.contracts.mime import (
    address_key,
    ascii_domain,
    build_message,
    check_address,
    to_bytes,
)
from recruitmail.contracts.models import DraftMessage, Recipient
from tests.contract.mailbox_sink import draft_message


def parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def to_line(raw: bytes) -> bytes:
    [line] = [line for line in raw.split(b"\r\n") if line.startswith(b"To:")]
    return line


def test_an_idn_domain_is_written_as_idna_and_the_name_as_an_encoded_word() -> None:
    raw = to_bytes(draft_message(to_name="Åsa Öberg", to_address="asa.test@exämple.se"))
    line = to_line(raw)
    assert line.isascii()
    assert line.endswith(b"<asa.test@xn--exmple-cua.se>")
    # No encoded word inside the angle brackets, where it is not allowed.
    assert b"=?" not in line.partition(b"<")[2]
    [to] = parsed(raw)["To"].addresses
    assert (to.display_name, to.addr_spec) == ("Åsa Öberg", "asa.test@xn--exmple-cua.se")


def test_a_trailing_dot_domain_is_written_without_the_dot() -> None:
    raw = to_bytes(draft_message(to_address="anna@example.se."))
    assert to_line(raw).endswith(b"<anna@example.se>")


def test_a_non_ascii_local_part_is_refused_without_naming_the_address() -> None:
    with pytest.raises(PermanentError) as caught:
        to_bytes(draft_message(to_address="åsa@example.se"))
    assert "åsa" not in str(caught.value)
    assert "cand-" in str(caught.value)


def test_an_unusable_address_is_refused_without_naming_it() -> None:
    with pytest.raises(PermanentError) as caught:
        check_address("anna svensson@example.se")
    assert "anna" not in str(caught.value)


@pytest.mark.parametrize(
    ("domain", "expected"),
    [
        ("exämple.se", "xn--exmple-cua.se"),
        ("EXAMPLE.se.", "example.se"),
        ("bücher.example", "xn--bcher-kva.example"),
        ("straße.de", "xn--strae-oqa.de"),  # IDNA 2008 keeps the ß (2003 made it "ss")
    ],
)
def test_ascii_domain(domain: str, expected: str) -> None:
    assert ascii_domain(domain) == expected


@pytest.mark.parametrize(
    "spelling",
    [
        "asa@exämple.se",
        "Asa@EXÄMPLE.se",
        "asa@xn--exmple-cua.se",
        "asa@xn--exmple-cua.se.",
        " <asa@exämple.se.> ",
    ],
)
def test_every_spelling_of_one_address_has_one_key(spelling: str) -> None:
    assert address_key(spelling) == "asa@exämple.se"


# -- the hand-assembled bytes against the email package's -------------------------------------

BOUNDARY = re.compile(rb"={15}\d{19}==")
WHEN = datetime(2026, 12, 9, 10, 0, tzinfo=UTC)
HOSTILE_NAMES = [
    "Anna Svensson",
    "Anna S. Svensson, Jr (HR)",  # specials: a quoted string
    'Åsa "Ö" Öberg\\',  # a quote and a backslash inside a non-ASCII name
    "محمد الرشيد",  # right to left
    "Eve\u202e\u2066 gnp.exe\u2069",  # bidi overrides and isolates
    "Mallory\r\nBcc: victim@example.org",  # a header smuggled by CR/LF
    "Trudy =?utf-8?q?=0D=0ABcc:_x@y?=",  # an encoded word that decodes to a newline
    "Å" * 150,  # longer than the 120 characters a name keeps
    "Zoë 👩🏽‍💻 Ñandú",  # combining sequences and an emoji that must not be cut
]
HOSTILE_SUBJECTS = [
    "Välkommen till intervjun, Anna!",
    "مرحبا\r\nBcc: evil@example.org " + "ü" * 300,
    "AB – måndag " + "x" * 200,
    "",
]


def email_package_bytes(message: DraftMessage) -> bytes:
    """What ``to_bytes`` wrote before it was assembled by hand: the email package's SMTP policy."""
    return build_message(message, WHEN).as_bytes(
        policy=email.policy.SMTP.clone(max_line_length=None)
    )


def structure(raw: bytes) -> list[tuple[str, object]]:
    """Every header (name, decoded value; addresses as (name, address)) and every part (type,
    charset, decoded text) as a reader sees them."""
    mail = parsed(raw)
    assert not mail.defects
    out: list[tuple[str, object]] = []
    for name, value in mail.items():
        if name in ("To", "Cc", "From"):
            out.append((name, [(a.display_name, a.addr_spec) for a in value.addresses]))
        elif name != "Content-Type":
            out.append((name, str(value)))
    for part in mail.walk():
        payload = part.get_payload(decode=True)
        out.append(
            (
                part.get_content_type(),
                (part.get_content_charset(), payload.decode("utf-8") if payload else None),
            )
        )
    return out


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("subject", HOSTILE_SUBJECTS)
def test_hand_assembled_bytes_read_back_as_the_email_package_wrote_them(
    name: str, subject: str
) -> None:
    message = replace(
        draft_message(to_name=name, to_address="asa.test@exämple.se", subject=subject),
        cc=(Recipient("bo.ek@example.org", name),),
        in_reply_to="<rm-0123@example.se>",
        categories=("recruitmail", "Välkommen", name),
        text=f"Hej {name}!\n\nline=with equals\ttab \n" + "é" * 120 + "\n.\nFrom here\n",
        html=f"<p>Hej {name}!</p>\n<p>{'å' * 90}</p>",
    )
    new = to_bytes(message, WHEN)
    assert structure(new) == structure(email_package_bytes(message))
    assert new.isascii()
    assert all(len(line) <= 998 for line in new.split(b"\r\n"))
    head = new.partition(b"\r\n\r\n")[0].replace(b"\r\n ", b" ").split(b"\r\n")
    assert [h.partition(b":")[0] for h in head] == [
        b"From", b"To", b"Cc", b"Subject", b"Message-ID", b"In-Reply-To", b"References",
        b"Date", b"X-Recruitmail-Key", b"Keywords", b"MIME-Version", b"Content-Type",
    ]  # fmt: skip
    for word in re.findall(rb"=\?utf-8\?q\?[^?]*\?=", new):
        assert len(word) <= 75
        word.decode("ascii")  # and each decodes alone: no character is cut between two words
        email.header.decode_header(word.decode("ascii"))[0][0].decode("utf-8")


def test_hand_assembled_bodies_are_byte_for_byte_the_email_package_s() -> None:
    message = draft_message(text="Hej!\r\nrad två\rrad tre  \n\n" + "x" * 200, subject="plain")
    old_lines = BOUNDARY.sub(b"B", email_package_bytes(message)).split(b"\r\n")
    new_lines = BOUNDARY.sub(b"B", to_bytes(message, WHEN)).split(b"\r\n")
    assert new_lines == old_lines


QUOTED_PRINTABLE_EDGES = [
    "",
    "\n",
    " ",
    "\t\n\t",
    "x" * 77 + " ",  # white space at the end of a line where only a soft break fits after it
    "x" * 76 + " ",
    "x" * 75 + "\t",
    "x" * 74 + " ",
    "x" * 76 + "=" + "y" * 10,  # an escape just where the line breaks
    "x" * 75 + "=" + "y" * 10,
    "x" * 74 + "é" * 40,  # escapes of a multi-byte character across the break
    "é" * 200 + " ",
    "line\x0bwith\x0cform feeds\x1c\x1d\x1e and NEL\x85 and\u2028separators",
    "lone\rcarriage\r\rreturns\r\n and \x00 a NUL",
    "=?utf-8?q?=0D=0A?= ==== " + "=" * 100,
    "Hej Åsa!\n\n" + ("Tack för i dag – " * 12) + "\n",
]


@pytest.mark.parametrize("body", QUOTED_PRINTABLE_EDGES)
def test_quoted_printable_bodies_are_the_email_package_s_at_every_edge(body: str) -> None:
    message = replace(draft_message(text=body, subject="plain"), html=f"<p>{body}</p>")
    assert BOUNDARY.sub(b"B", to_bytes(message, WHEN)) == BOUNDARY.sub(
        b"B", email_package_bytes(message)
    )
