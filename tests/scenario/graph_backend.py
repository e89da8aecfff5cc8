"""The fake Microsoft 365 tenant as a scenario backend: the calendar and the mailbox in Graph."""

from __future__ import annotations

import email
import email.policy
from datetime import datetime
from email.message import Message

from recruitmail.contracts.connector import KEY_HEADER
from tests.fakes.graph import FakeGraph
from tests.scenario import two_weeks
from tests.scenario.spec import EventSpec

USER = two_weeks.RECRUITER.address


class GraphBackend:
    """The scenario's calendar and mailbox in the fake Microsoft 365 tenant. The mailbox's time
    zone is the Windows name Outlook stores, "W. Europe Standard Time"; so is every event's."""

    def __init__(self, fake: FakeGraph, expire_after_puts: int = 0) -> None:
        self.fake = fake
        self.expire_after_puts = expire_after_puts
        self.puts = 0
        # The recruiter's own mails (immutable ids), and the keys of the drafts she sent after
        # editing them in Outlook on the web (immutable id → key), which lost our property.
        self.personal: set[str] = set()
        self.edited: dict[str, str] = {}
        fake.add_mailbox(USER, two_weeks.RECRUITER.name, time_zone="W. Europe Standard Time")

    def put(self, spec: EventSpec) -> None:
        self.fake.put_event(USER, spec)
        self.puts += 1
        if self.puts == self.expire_after_puts:
            self.fake.expire_delta_tokens("410")

    def delete(self, uid: str) -> None:
        self.fake.delete_event(USER, uid)

    def send_to(self, candidate: str, when: datetime, web_edit: bool = False) -> None:
        mine = [m for m in self.fake.drafts(USER) if candidate in str(m.data["toRecipients"])]
        assert mine, f"no draft to {candidate} to send at {when}"
        newest = max(mine, key=lambda m: m.order)
        if web_edit:
            key = str(_parse(self.fake.mime(USER, newest))[KEY_HEADER] or "")
            self.edited[newest.immutable_id] = key
            self.fake.send_message(USER, newest.immutable_id, web_edit=True)
        else:
            self.fake.send_message(USER, newest.immutable_id)

    def write_personal_mail(self, to: tuple[str, ...], cc: tuple[str, ...], when: datetime) -> None:
        """A mail the recruiter wrote in Outlook, in Sent Items."""
        message_id = self.fake.add_sent(USER, to[0], when, subject="Kort avstämning")
        # add_sent knows one To recipient; the recruiter's mail has more, and a Cc.
        with self.fake.lock:
            data = self.fake.message(USER, message_id).data
            data["toRecipients"] = [{"emailAddress": {"name": "", "address": a}} for a in to]
            data["ccRecipients"] = [{"emailAddress": {"name": "", "address": a}} for a in cc]
        self.personal.add(message_id)

    def config(self) -> str:
        table = "\n".join(f"{k} = {_toml(v)}" for k, v in self.fake.options(USER).items())
        return (
            f'\n[mailboxes.source]\ntype = "microsoft"\n{table}\n'
            f'\n[mailboxes.sink]\ntype = "microsoft"\n{table}\n'
        )

    def messages(self) -> list[Message]:
        out = []
        for stored in self.fake.messages(USER):
            if stored.folder not in ("drafts", "sentitems") or stored.immutable_id in self.personal:
                continue
            message = _parse(self.fake.mime(USER, stored))
            if stored.immutable_id in self.edited and message[KEY_HEADER] is None:
                message[KEY_HEADER] = self.edited[stored.immutable_id]
            out.append(message)
        return out


def _parse(raw: bytes) -> Message:
    return email.message_from_bytes(raw, policy=email.policy.default)


def _toml(value: object) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
