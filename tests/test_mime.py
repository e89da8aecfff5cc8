"""Address headers of drafts: international domains, display names and what error messages say."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage

import pytest

from recruitmail.contracts.errors import PermanentError
from recruitmail.contracts.mime import address_key, ascii_domain, check_address, to_bytes
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
