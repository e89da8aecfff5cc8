"""The IMAP sink against a real Dovecot, with and without UIDPLUS: the contract, and what IMAP adds."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage, Message
from pathlib import Path
from typing import Any

import pytest
from imapclient import IMAPClient
from pydantic import ValidationError

from recruitmail.connectors.imap import ImapSink, SinkOptions, open_sink
from recruitmail.contracts import limits
from recruitmail.contracts.connector import KEY_HEADER, ConnectorContext
from recruitmail.contracts.errors import AmbiguousError, AuthError, ConfigError, TransientError
from recruitmail.contracts.models import DraftRef, DraftState
from tests.contract.mailbox_sink import (
    CANDIDATE,
    MAILBOX,
    MailboxSinkContract,
    draft_message,
    parts,
    with_key,
)
from tests.fakes.graph import ThrowawayCA
from tests.servers import LOOPBACK, DovecotServer, dovecot_fixture  # noqa: F401

pytestmark = pytest.mark.servers

OBSOLETE = b"recruitmail-obsolete"


def parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def location(ref: DraftRef) -> tuple[str, int]:
    """Folder and UID of a draft reference (the sink documents its remote id as this JSON)."""
    data = json.loads(ref.remote_id)
    return str(data["f"]), int(data["u"])


class DovecotMailbox:
    """The ``mailbox_backend`` of the contract: a Dovecot account, and an independent client."""

    def __init__(self, server: DovecotServer, tmp_path: Path) -> None:
        self.server = server
        self.user, self.password = server.add_user()
        self.secret = tmp_path / "imap-password"
        self.secret.write_text(self.password + "\n")
        self.context = ConnectorContext(
            mailbox=MAILBOX,
            mailbox_name="Rut Rekryterare",
            time_zone="Europe/Stockholm",
            company_domains=("example.se",),
            state_dir=tmp_path,
        )
        self.opened: list[ImapSink] = []

    def options(self, **changes: Any) -> SinkOptions:
        raw: dict[str, Any] = {
            "host": LOOPBACK,
            "port": self.server.port,
            "security": "plain",
            "username": self.user,
            "password": f"file:{self.secret}",
            "timeout": 10,
        }
        raw.update(changes)
        return SinkOptions(**raw)

    def sink(self, **changes: Any) -> ImapSink:
        sink = open_sink(self.options(**changes), self.context)
        self.opened.append(sink)
        return sink

    def close(self) -> None:
        for sink in self.opened:
            sink.close()

    # -- the independent mail client --------------------------------------------------------

    def client(self) -> IMAPClient:
        client = IMAPClient(LOOPBACK, self.server.port, ssl=False, timeout=10)
        client.login(self.user, self.password)
        return client

    def raw_messages(self, folder: str) -> list[bytes]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            uids = client.search(["NOT", "DELETED"])
            fetched = client.fetch(uids, ["BODY.PEEK[]"])
            return [bytes(fetched[uid][b"BODY[]"]) for uid in sorted(fetched)]

    def drafts(self) -> list[Message]:
        return [parse(raw) for raw in self.raw_messages("Drafts")]

    def edit(self, ref: DraftRef) -> None:
        """What Thunderbird does: save the changed draft as a new message, expunge the old one."""
        folder, uid = location(ref)
        with self.client() as client:
            client.select_folder(folder)
            raw = bytes(client.fetch([uid], ["BODY.PEEK[]"])[uid][b"BODY[]"])
            mail = parse(raw)
            assert isinstance(mail, EmailMessage)
            text = mail.get_body(("plain",))
            assert text is not None
            text.set_content("Hej Anna!\n\nJag ändrade lite här.\n", charset="utf-8")
            client.append(folder, mail.as_bytes(), flags=(b"\\Draft", b"\\Seen"))
            client.add_flags([uid], [b"\\Deleted"])
            client.expunge()

    def send(self, ref: DraftRef) -> None:
        """A client sends the draft and moves it to Sent."""
        folder, uid = location(ref)
        with self.client() as client:
            client.select_folder(folder)
            client.remove_flags([uid], [b"\\Draft"])
            client.move([uid], "Sent")

    def delete(self, ref: DraftRef) -> None:
        folder, uid = location(ref)
        with self.client() as client:
            client.select_folder(folder)
            client.add_flags([uid], [b"\\Deleted"])
            client.expunge()

    def add_sent(self, to: str, when: datetime) -> None:
        mail = EmailMessage()
        mail["From"] = MAILBOX
        mail["To"] = to
        mail["Subject"] = "Hej!"
        mail["Date"] = when
        mail.set_content("Hej igen.\n")
        with self.client() as client:
            client.append("Sent", mail.as_bytes(), flags=(b"\\Seen",), msg_time=when)

    def marked_obsolete(self, ref: DraftRef) -> bool:
        folder, uid = location(ref)
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            flags = client.get_flags([uid]).get(uid, ())
            return OBSOLETE in flags


@pytest.fixture
def mailbox_backend(dovecot: DovecotServer, tmp_path: Path) -> Iterator[DovecotMailbox]:
    backend = DovecotMailbox(dovecot, tmp_path)
    yield backend
    backend.close()


class TestImapSink(MailboxSinkContract):
    def test_pending_draft_can_be_updated(self, mailbox_backend: Any) -> None:
        """IMAP cannot change a stored message and recruitmail never deletes: the replacement is
        appended and the old draft stays beside it, tagged obsolete (documented behaviour)."""
        sink = mailbox_backend.sink()
        message = draft_message()
        ref = sink.create_draft(message)
        newer = draft_message(subject="Ny tid för intervjun", text="Hej Anna!\n\nNy tid: 15:00.\n")
        updated = sink.update_draft(ref, newer)

        mails = mailbox_backend.drafts()
        assert len(mails) == 2
        assert mailbox_backend.marked_obsolete(ref)
        assert not mailbox_backend.marked_obsolete(updated)
        [current] = [m for m in mails if str(m["Subject"]) == "Ny tid för intervjun"]
        assert "Ny tid: 15:00." in parts(current)["text/plain"]
        assert current["Message-ID"] == message.key.message_id()
        assert sink.draft_state(updated) is DraftState.PENDING
        found = sink.find_draft(message.key)
        assert found is not None and found.remote_id == updated.remote_id


# -- what IMAP adds to the contract ----------------------------------------------------------


def test_appended_bytes_read_back_independently_are_a_valid_mime_message(
    mailbox_backend: DovecotMailbox,
) -> None:
    message = draft_message()
    ref = mailbox_backend.sink().create_draft(message)

    [raw] = mailbox_backend.raw_messages("Drafts")
    assert hashlib.sha256(raw).hexdigest() == ref.fingerprint  # stored exactly as appended

    # Dovecot's own tool reads the stored message straight from the mail store.
    text = mailbox_backend.server.doveadm(
        "fetch", "-u", mailbox_backend.user, "text", "mailbox", "Drafts", "all"
    )
    mail = parse(text.removeprefix("text:\n").encode("utf-8"))
    assert not mail.defects
    assert mail.get_content_type() == "multipart/alternative"
    assert mail["Message-ID"] == message.key.message_id()
    assert mail[KEY_HEADER] == message.key.id
    assert set(parts(mail)) == {"text/plain", "text/html"}
    flags = mailbox_backend.server.doveadm(
        "fetch", "-u", mailbox_backend.user, "flags", "mailbox", "Drafts", "all"
    )
    assert "\\Draft" in flags and "\\Seen" in flags


def test_draft_moved_to_sent_by_another_client_is_sent(mailbox_backend: DovecotMailbox) -> None:
    sink = mailbox_backend.sink()
    ref = sink.create_draft(draft_message())
    with mailbox_backend.client() as client:
        client.select_folder("Drafts")
        [uid] = client.search(["ALL"])
        client.move([uid], "Sent")
    assert sink.draft_state(ref) is DraftState.SENT
    assert mailbox_backend.drafts() == []


def test_a_dropped_connection_is_reopened_once(mailbox_backend: DovecotMailbox) -> None:
    sink = mailbox_backend.sink()
    message = draft_message()
    ref = sink.create_draft(message)
    mailbox_backend.server.stop()
    mailbox_backend.server.start()
    # The sink's connection died with the server; the next call reconnects by itself.
    found = sink.find_draft(message.key)
    assert found is not None and found.remote_id == ref.remote_id


def test_dovecot_down_mid_pass_then_back_gives_one_draft_per_key(
    mailbox_backend: DovecotMailbox,
) -> None:
    """A pass = for each planned mail: look the key up, create the draft if it is missing."""
    messages = [draft_message(f"interview-{n}@example.se") for n in range(4)]
    sink = mailbox_backend.sink()

    def one_pass() -> list[str]:
        outcome = []
        for message in messages:
            if sink.find_draft(message.key) is None:
                sink.create_draft(message)
                outcome.append("created")
            else:
                outcome.append("found")
        return outcome

    for message in messages[:2]:
        sink.create_draft(message)
    mailbox_backend.server.stop()
    with pytest.raises(TransientError):
        one_pass()
    mailbox_backend.server.start()

    assert one_pass() == ["found", "found", "created", "created"]
    assert one_pass() == ["found"] * 4
    drafts = mailbox_backend.drafts()
    assert len(drafts) == 4
    for message in messages:
        assert len(with_key(drafts, message.key)) == 1


class CuttingProxy:
    """A loopback TCP relay that lets an APPEND reach Dovecot, then drops the connection instead
    of passing on the server's answer: the client cannot know whether the draft landed."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server((LOOPBACK, 0))
        self.port = int(self.listener.getsockname()[1])
        self.cut = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection((LOOPBACK, self.target_port))
            appending = threading.Event()
            threading.Thread(
                target=self._pipe, args=(client, upstream, appending, True), daemon=True
            ).start()
            threading.Thread(
                target=self._pipe, args=(upstream, client, appending, False), daemon=True
            ).start()

    def _pipe(
        self, src: socket.socket, dst: socket.socket, appending: threading.Event, up: bool
    ) -> None:
        try:
            while chunk := src.recv(65536):
                if up and b" APPEND " in chunk.upper() and not self.cut.is_set():
                    appending.set()
                if not up and appending.is_set() and b"Append completed" in chunk:
                    self.cut.set()
                    appending.clear()
                    for sock in (src, dst):
                        sock.shutdown(socket.SHUT_RDWR)
                    return
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                sock.close()

    def close(self) -> None:
        self.listener.close()


def test_append_whose_answer_is_lost_is_ambiguous_and_then_found(
    mailbox_backend: DovecotMailbox,
) -> None:
    proxy = CuttingProxy(mailbox_backend.server.port)
    try:
        sink = mailbox_backend.sink(port=proxy.port)
        message = draft_message()
        with pytest.raises(AmbiguousError):
            sink.create_draft(message)
        assert proxy.cut.is_set()
        # The caller looks the key up before retrying: the draft is there, exactly once.
        found = sink.find_draft(message.key)
        assert found is not None
        assert len(with_key(mailbox_backend.drafts(), message.key)) == 1
        assert sink.draft_state(found) is DraftState.PENDING
    finally:
        proxy.close()


def test_wrong_password_is_an_auth_error_naming_the_account(
    mailbox_backend: DovecotMailbox, tmp_path: Path
) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password")
    sink = mailbox_backend.sink(password=f"file:{wrong}")
    with pytest.raises(AuthError, match=mailbox_backend.user):
        sink.find_draft(draft_message().key)


def test_server_not_listening_is_transient(mailbox_backend: DovecotMailbox) -> None:
    sink = mailbox_backend.sink()
    mailbox_backend.server.stop()
    with pytest.raises(TransientError):
        sink.create_draft(draft_message())
    mailbox_backend.server.start()
    assert mailbox_backend.drafts() == []


def test_missing_secret_fails_when_opened(mailbox_backend: DovecotMailbox, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="imap password"):
        mailbox_backend.sink(password=f"file:{tmp_path / 'absent'}")


def test_the_special_use_flag_wins_over_the_fallback_name(mailbox_backend: DovecotMailbox) -> None:
    sink = mailbox_backend.sink(drafts_folder="Nope", sent_folder="Nope either")
    sink.create_draft(draft_message())
    assert len(mailbox_backend.drafts()) == 1


def test_last_contact_ignores_an_address_that_merely_contains_the_candidates(
    mailbox_backend: DovecotMailbox,
) -> None:
    monday = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    mailbox_backend.add_sent(f"h{CANDIDATE}", monday)
    mailbox_backend.add_sent(f"Anna <{CANDIDATE}>", monday - timedelta(days=1))
    newest = mailbox_backend.sink().last_contact(CANDIDATE, monday - timedelta(days=30))
    assert newest == monday - timedelta(days=1)


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"host": "imap.example.se", "security": "plain"}, "unencrypted"),
        ({"password": "hunter2"}, "secret reference"),
        ({"password": None}, "exactly one"),
        ({"oauth2_token": "env:TOKEN"}, "exactly one"),
        ({"obsolete_keyword": "two words"}, "keyword"),
    ],
)
def test_unsafe_or_incomplete_options_are_refused(changes: dict[str, Any], problem: str) -> None:
    raw: dict[str, Any] = {
        "host": LOOPBACK,
        "security": "plain",
        "username": "u",
        "password": "env:P",
    }
    raw.update(changes)
    with pytest.raises(ValidationError, match=problem):
        SinkOptions(**raw)


def test_standard_ports_follow_the_security() -> None:
    def port(security: str) -> int:
        return SinkOptions(
            host=LOOPBACK, security=security, username="u", password="env:P"
        ).effective_port

    assert (port("tls"), port("starttls"), port("plain")) == (993, 143, 143)


# -- international addresses, busy servers, the trust store ------------------------------------


def test_an_idn_draft_has_an_idna_domain_and_counts_as_contact_in_any_spelling(
    mailbox_backend: DovecotMailbox,
) -> None:
    sink = mailbox_backend.sink()
    sink.create_draft(draft_message(to_name="Åsa Öberg", to_address="asa@exämple.se"))
    [raw] = mailbox_backend.raw_messages("Drafts")
    assert b"<asa@xn--exmple-cua.se>" in raw
    monday = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)
    mailbox_backend.add_sent("Åsa <asa@xn--exmple-cua.se.>", monday)
    since = monday - timedelta(days=30)
    assert sink.last_contact("Asa@exämple.se", since) == monday
    assert sink.last_contact("asa@exämple.se.", since) == monday


class BusyImap(socketserver.StreamRequestHandler):
    """An IMAP server that greets, then answers every login with RFC 5530's UNAVAILABLE and a
    wait of 95 years."""

    def handle(self) -> None:
        self.wfile.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
        while line := self.rfile.readline():
            tag, _, rest = line.decode("ascii", "replace").strip().partition(" ")
            command = rest.split(" ", 1)[0].upper()
            if command == "CAPABILITY":
                self.wfile.write(f"* CAPABILITY IMAP4rev1 AUTH=PLAIN\r\n{tag} OK done\r\n".encode())
            elif command == "LOGIN":
                self.wfile.write(
                    f"{tag} NO [UNAVAILABLE] Try again in 3000000000 seconds\r\n".encode()
                )
            else:
                self.wfile.write(f"* BYE\r\n{tag} OK bye\r\n".encode())
                return


@pytest.fixture
def busy_imap(tmp_path: Path) -> Iterator[tuple[int, ThrowawayCA, threading.Event]]:
    """A loopback IMAP-over-TLS server signed by a throwaway CA."""
    ca = ThrowawayCA.create(tmp_path)
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(ca.cert_file, ca.key_file)

    class Server(socketserver.ThreadingTCPServer):
        daemon_threads = True
        allow_reuse_address = True

        def get_request(self) -> tuple[Any, Any]:
            sock, address = self.socket.accept()
            return tls.wrap_socket(sock, server_side=True), address

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a client that refuses our certificate

    server = Server((LOOPBACK, 0), BusyImap)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield int(server.server_address[1]), ca, threading.Event()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def busy_sink(port: int, tmp_path: Path) -> ImapSink:
    secret = tmp_path / "pw"
    secret.write_text("pw")
    options = SinkOptions(
        host=LOOPBACK,
        port=port,
        security="tls",
        username="rut",
        password=f"file:{secret}",
        timeout=5,
    )
    context = ConnectorContext(
        mailbox=MAILBOX,
        mailbox_name="Rut",
        time_zone="Europe/Stockholm",
        company_domains=("example.se",),
        state_dir=tmp_path,
    )
    return open_sink(options, context)


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"])
def test_the_ca_named_by_the_usual_variables_is_trusted_and_a_long_wait_is_capped(
    busy_imap: tuple[int, ThrowawayCA, threading.Event],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
) -> None:
    port, ca, _ = busy_imap
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(ConfigError, match="not trusted"):
        busy_sink(port, tmp_path).find_draft(draft_message().key)
    monkeypatch.setenv(variable, str(ca.ca_file))
    sink = busy_sink(port, tmp_path)
    with pytest.raises(TransientError) as caught:
        sink.find_draft(draft_message().key)
    sink.close()
    assert caught.value.retry_after == limits.MAX_RETRY_AFTER
