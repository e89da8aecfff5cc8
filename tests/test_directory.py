"""Fleets from the directory: ``[[mailboxes_from]]`` groups of Microsoft Entra ID and Google
Workspace become mailboxes, through the real command line and the real service, against the
strict loopback fakes of Graph and the Admin SDK.

What an administrator checks: the members are the mailboxes (name, title, language from the
directory), a ``[[mailboxes]]`` entry changes its member field by field, a member added or
removed in the directory is picked up by a running service without a restart, and directory
trouble never costs a mailbox (an outage or an empty answer keeps the members last read, and
``status`` and the log say so). The fakes refuse the query shapes the providers refuse.
"""

from __future__ import annotations

import json
import os
import re
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from recruitmail.daemon.cli import main
from recruitmail.daemon.runtime import describe_groups, refresh_fleet
from recruitmail.daemon.settings import load_settings
from tests.fakes.google import GoogleFake
from tests.fakes.graph import FakeGraph
from tests.scenario import two_weeks
from tests.scenario.spec import at
from tests.servers import spawn, stop

REPO = Path(__file__).resolve().parent.parent
GROUP = "recruiters@nordljus.se"
LISA = two_weeks.RECRUITER.address  # her calendar holds the scenario's first interview
BO = "bo.berg@nordljus.se"
CARL = "carl.dahl@nordljus.se"
DORA = "dora.falk@nordljus.se"
BEFORE_ANNAS_INTERVIEW = at(two_weeks.d(7), "09:00")
WAIT = 60.0  # a deadline for what should happen soon: a safety net, not a measurement


def _toml(value: object) -> str:
    return json.dumps(str(value), ensure_ascii=False)


def _table(options: dict[str, Any]) -> str:
    return "\n".join(f"{k} = {_toml(v)}" for k, v in options.items())


def company(state_dir: Path, service: str = "") -> str:
    """The scenario's configuration without its [[mailboxes]]: company, people, stages."""
    head = two_weeks.CONFIG.split("[[mailboxes]]")[0].replace("{state_dir}", str(state_dir))
    return head + service


@dataclass
class Directory:
    fake: FakeGraph
    group: str
    users: dict[str, str]  # address → directory id
    config: Path

    def write(self, extra: str = "", service: str = "") -> Path:
        options = _table(self.fake.options(None, max_attempts=1))
        self.config.write_text(
            company(self.config.parent / "state", service)
            + extra
            + f"""
[[mailboxes_from]]
type = "microsoft"
group = "{GROUP}"
defaults = {{ language = "sv", signature = "Nordljus AB" }}

[mailboxes_from.source]
type = "microsoft"
{options}

[mailboxes_from.sink]
type = "microsoft"
{options}
""",
            encoding="utf-8",
        )
        return self.config


@pytest.fixture
def entra(tmp_path: Path) -> Iterator[Directory]:
    with FakeGraph(tmp_path) as fake:
        users = {
            LISA: fake.add_directory_user(LISA, "Lisa Ek", title="Rekryterare", language="sv-SE"),
            BO: fake.add_directory_user(BO, "Bo Berg", title="Talent Partner", language="en-US"),
            CARL: fake.add_directory_user(CARL, "Carl Dahl", language="fr-FR"),
            "off@nordljus.se": fake.add_directory_user("off@nordljus.se", "Off", enabled=False),
            "": fake.add_directory_user(None, "Meeting room screen"),
        }
        # Carl comes through a nested group; Lisa is in both.
        nested = fake.add_group("talent@nordljus.se", [users[CARL], users[LISA]])
        group = fake.add_group(
            GROUP, [users[LISA], users[BO], users["off@nordljus.se"], users[""], nested]
        )
        for address, name in (
            (LISA, "Lisa Ek"),
            (BO, "Bo Berg"),
            (CARL, "Carl Dahl"),
            (DORA, "Dora Falk"),
        ):
            fake.add_mailbox(address, name)
        fake.put_event(LISA, two_weeks.ANNA_1)
        directory = Directory(fake, group, users, tmp_path / "recruitmail.toml")
        directory.write()
        yield directory


def once(config: Path) -> int:
    return main(["--config", str(config), "once", "--now", BEFORE_ANNAS_INTERVIEW.isoformat()])


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str  # the log lines too


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Any:
    """``recruitmail --config CONFIG ARGS…`` (the command line's own entry point, in this process)."""

    def run(config: Path, *args: str) -> Ran:
        capsys.readouterr()
        code = main(["--config", str(config), *args])
        out = capsys.readouterr()
        return Ran(code, out.out, out.err)

    return run


def mailboxes(config: Path) -> dict[str, tuple[str, str, str, str]]:
    """What every command sees: address → (name, title, language, signature)."""
    return {
        b.address: (b.name, b.title_in(b.language), b.language, b.signature)
        for b in load_settings(config).mailboxes
    }


# --------------------------------------------------------------------------------------------
# Members become mailboxes


def test_the_members_of_a_group_become_mailboxes_through_once_and_status(
    entra: Directory, cli: Any
) -> None:
    assert once(entra.config) == 0

    assert mailboxes(entra.config) == {
        LISA: ("Lisa Ek", "Rekryterare", "sv", "Nordljus AB"),
        BO: ("Bo Berg", "Talent Partner", "en", "Nordljus AB"),
        CARL: ("Carl Dahl", "", "sv", "Nordljus AB"),  # French is not written: the default
    }
    welcome = [m for m in entra.fake.drafts(LISA) if two_weeks.ANNA in str(m.data["toRecipients"])]
    assert len(welcome) == 1
    assert "Rekryterare" in welcome[0].data["body"]["content"]  # her title, from the directory
    # Every member had its pass: its calendar was asked.
    asked = {r.mailbox for r in entra.fake.graph_requests() if "calendarView" in r.path}
    assert asked == {LISA, BO, CARL}
    shown = cli(entra.config, "status", "--offline")
    assert shown.returncode == 0, shown.stderr
    assert f"{two_weeks.ANNA}  (recruiter {LISA})" in shown.stdout
    assert "welcome" in shown.stdout


def test_an_entry_in_the_file_wins_field_by_field(entra: Directory) -> None:
    options = _table(entra.fake.options(None, max_attempts=1))
    entra.write(
        extra=f"""
[[mailboxes]]
address = "{BO}"
language = "sv"
signature = "Bo, tel. 070-123 45 67"

[[mailboxes]]
address = "nobody@nordljus.se"
phone = "+46 70 000 00 00"

[[mailboxes]]
address = "{CARL}"
name = "Carl D."
title = "Rekryteringsansvarig"
[mailboxes.source]
type = "microsoft"
{options}
[mailboxes.sink]
type = "microsoft"
{options}
category = "rekrytering"
"""
    )
    assert once(entra.config) == 0

    seen = mailboxes(entra.config)
    # Bo: the two fields the entry names; name and title still from the directory.
    assert seen[BO] == ("Bo Berg", "Talent Partner", "sv", "Bo, tel. 070-123 45 67")
    # Carl: a full entry keeps what it sets and takes from the directory and the group's
    # defaults only what it leaves out (here the signature).
    assert seen[CARL] == ("Carl D.", "Rekryteringsansvarig", "sv", "Nordljus AB")
    assert load_settings(entra.config).mailbox(CARL).sink.options()["category"] == "rekrytering"
    assert list(seen) == [CARL, BO, LISA]  # the file's own entry first, in its place
    # `check` names an override that matches no member (a typo, or someone who left).
    assert describe_groups(load_settings(entra.config))[-1] == (
        "[[mailboxes]] without source or sink, for no member of any group: nobody@nordljus.se"
    )


# --------------------------------------------------------------------------------------------
# Directory trouble never costs a mailbox


def test_a_directory_outage_keeps_the_members_and_status_and_the_log_say_so(
    entra: Directory, cli: Any
) -> None:
    assert once(entra.config) == 0
    entra.fake.fail_always("/groups", 503, "ServiceUnavailable")

    run = cli(entra.config, "once", "--now", BEFORE_ANNAS_INTERVIEW.isoformat())

    assert run.returncode == 0, run.stderr
    assert set(mailboxes(entra.config)) == {LISA, BO, CARL}
    assert re.search(
        rf"directory group {GROUP} \(microsoft\): .*503.*keeping the 3 member", run.stderr
    )
    after = [r for r in entra.fake.graph_requests() if "calendarView" in r.path]
    assert {r.mailbox for r in after} == {LISA, BO, CARL}  # the kept members still had passes
    shown = cli(entra.config, "status", "--offline").stdout
    assert f"Mailbox {BO}" in shown
    assert re.search(r"! directory group \(failing since .*\): group .*503", shown)

    entra.fake.fail_always("/groups", 0, "")
    assert once(entra.config) == 0
    assert "! directory group" not in cli(entra.config, "status", "--offline").stdout


def test_a_first_reading_that_fails_says_so_and_fails_the_run(entra: Directory, cli: Any) -> None:
    entra.fake.granted.discard("GroupMember.Read.All")

    run = cli(entra.config, "once", "--now", BEFORE_ANNAS_INTERVIEW.isoformat())

    assert run.returncode == 1
    assert f"mailboxes_from[0] ({GROUP}): FAILED:" in run.stderr
    assert "GroupMember.Read.All" in run.stderr  # the permission to grant


def test_without_user_read_all_the_members_are_not_taken_for_an_empty_group(
    entra: Directory, cli: Any
) -> None:
    assert once(entra.config) == 0
    entra.fake.granted.discard("User.Read.All")  # Graph then lists members with id and type only

    assert once(entra.config) == 0

    assert set(mailboxes(entra.config)) == {LISA, BO, CARL}
    shown = cli(entra.config, "status", "--offline").stdout
    assert "User.Read.All" in shown


def test_an_empty_answer_from_a_group_that_had_members_keeps_them_with_a_warning(
    entra: Directory, cli: Any
) -> None:
    assert once(entra.config) == 0
    entra.fake.set_group_members(entra.group, [])

    run = cli(entra.config, "once", "--now", BEFORE_ANNAS_INTERVIEW.isoformat())

    assert run.returncode == 0, run.stderr
    assert set(mailboxes(entra.config)) == {LISA, BO, CARL}
    assert "WARNING" in run.stderr and "answered that the group has no members" in run.stderr
    assert "no members, where it had 3" in cli(entra.config, "status", "--offline").stdout


# --------------------------------------------------------------------------------------------
# A running service follows the group


def test_a_running_service_picks_up_a_member_added_and_one_removed(entra: Directory) -> None:
    config = entra.write(service="interval_seconds = 10\ndirectory_refresh_minutes = 60\n")
    log = entra.config.parent / "service.log"
    with log.open("wb") as output:
        process = spawn(
            [sys.executable, "-m", "recruitmail", "--config", str(config), "run"],
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "NOTIFY_SOCKET": "", "WATCHDOG_USEC": ""},
        )
        try:
            wait_for(lambda: asked_calendar(entra.fake) >= {LISA, BO, CARL}, log)
            # In the directory: Dora joins the group, Bo leaves it.
            dora = entra.fake.add_directory_user(DORA, "Dora Falk", language="da-DK")
            entra.fake.set_group_members(
                entra.group, [entra.users[LISA], dora, entra.users["off@nordljus.se"]]
            )
            process.send_signal(signal.SIGHUP)

            def dora_asked() -> bool:
                # A reload is refused when the templates render too slowly (a loaded machine):
                # the running configuration stays, so ask again, as an administrator would.
                refused = log.read_text("utf-8").count("reload refused")
                if refused > dora_asked.refused:  # type: ignore[attr-defined]
                    dora_asked.refused = refused  # type: ignore[attr-defined]
                    process.send_signal(signal.SIGHUP)
                return DORA in asked_calendar(entra.fake)

            dora_asked.refused = 0  # type: ignore[attr-defined]
            wait_for(dora_asked, log)
            wait_for(lambda: "1 mailbox(es) added, 2 removed" in log.read_text("utf-8"), log)
            requests_for_bo = len([r for r in entra.fake.graph_requests() if r.mailbox == BO])
            started = time.monotonic()
            # A whole interval and more: Bo's pass would have come round again.
            while time.monotonic() - started < 12:
                assert process.poll() is None, log.read_text("utf-8")
                time.sleep(0.5)
            assert (
                len([r for r in entra.fake.graph_requests() if r.mailbox == BO]) == requests_for_bo
            )
        finally:
            stop(process)
    assert set(mailboxes(config)) == {LISA, DORA}
    assert mailboxes(config)[DORA][2] == "da"


def asked_calendar(fake: FakeGraph) -> set[str]:
    return {
        r.mailbox for r in fake.graph_requests() if "calendarView" in r.path and r.status == 200
    }


def wait_for(condition: Any, log: Path) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, log.read_text("utf-8")
        time.sleep(0.2)


# --------------------------------------------------------------------------------------------
# Google Workspace


@pytest.fixture
def workspace(tmp_path: Path) -> Iterator[tuple[GoogleFake, Path]]:
    fake = GoogleFake().start()
    try:
        info, client_id = fake.create_service_account()
        key = tmp_path / "key.json"
        key.write_text(json.dumps(info), encoding="utf-8")
        admin = "it-admin@nordljus.se"
        fake.add_user(admin)
        fake.directory_admins.add(admin)
        fake.grant_delegation(
            client_id,
            [
                "https://www.googleapis.com/auth/admin.directory.group.member.readonly",
                "https://www.googleapis.com/auth/admin.directory.user.readonly",
                "https://www.googleapis.com/auth/calendar.events.readonly",
                "https://www.googleapis.com/auth/gmail.compose",
            ],
        )
        for member in (LISA, BO, CARL, DORA):
            fake.add_user(member)  # the Workspace accounts: calendars and mailboxes
        fake.add_directory_user(LISA, "Lisa Ek", title="Rekryterare", language="sv")
        fake.add_directory_user(BO, "Bo Berg", title="Talent Partner", language="nb")
        fake.add_directory_user(CARL, "Carl Dahl", suspended=True)
        fake.add_directory_user(DORA, "Dora Falk", language="fi")
        fake.set_directory_group("nested@nordljus.se", [DORA])
        fake.set_directory_group(GROUP, [LISA, BO, CARL, "nested@nordljus.se"])
        options = {
            "key_file": str(key),
            "token_uri": fake.token_uri,
            "calendar_endpoint": fake.url + "calendar/v3/",
            "gmail_endpoint": fake.url,
            "max_attempts": 1,
        }
        text = (
            company(tmp_path / "state")
            + f"""
[[mailboxes_from]]
type = "google"
group = "{GROUP}"
directory = {{ key_file = {_toml(key)}, token_uri = {_toml(fake.token_uri)}, subject = "{admin}", directory_endpoint = {_toml(fake.url)}, max_attempts = 1 }}
[mailboxes_from.source]
type = "google"
{_table(options)}
[mailboxes_from.sink]
type = "google"
{_table(options)}
"""
        )
        config = tmp_path / "recruitmail.toml"
        config.write_text(text, encoding="utf-8")
        yield fake, config
    finally:
        fake.stop()


def test_the_members_of_a_workspace_group_become_mailboxes(
    workspace: tuple[GoogleFake, Path],
) -> None:
    fake, config = workspace
    settings = load_settings(config)

    expanded, readings = refresh_fleet(settings, None)

    assert [r.describe() for r in readings] == [
        f"mailboxes_from[0] (google group {GROUP}): 3 member(s)"
    ]
    assert {
        b.address: (b.name, b.title_in(b.language), b.language) for b in expanded.mailboxes
    } == {
        LISA: ("Lisa Ek", "Rekryterare", "sv"),
        BO: ("Bo Berg", "Talent Partner", "nb"),
        DORA: ("Dora Falk", "", "fi"),  # through the nested group; Carl is suspended
    }
    lists = [r for r in fake.requests if r.path.endswith("/members")]
    assert lists and all(r.query["includeDerivedMembership"] == ["true"] for r in lists)
    gets = [r for r in fake.requests if "/admin/directory/v1/users/" in r.path]
    assert gets and all(r.query["viewType"] == ["domain_public"] for r in gets)


def test_a_workspace_fleet_has_its_passes_through_once(workspace: tuple[GoogleFake, Path]) -> None:
    fake, config = workspace

    assert once(config) == 0

    assert {r.user for r in fake.api_requests("calendar")} == {LISA, BO, DORA}
    (line,) = describe_groups(load_settings(config))  # what `check` prints for the group
    assert re.fullmatch(
        rf"mailboxes_from\[0\] \(google group {GROUP}\): 3 member\(s\) \(last read .* UTC\)", line
    )


def test_a_workspace_subject_without_an_admin_role_is_named_and_the_members_are_kept(
    workspace: tuple[GoogleFake, Path],
) -> None:
    fake, config = workspace
    settings = load_settings(config)
    refresh_fleet(settings, None)
    fake.directory_admins.clear()

    expanded, readings = refresh_fleet(settings, None)

    assert "403" in readings[0].problem and "members.list" in readings[0].problem
    assert {b.address for b in expanded.mailboxes} == {LISA, BO, DORA}


# --------------------------------------------------------------------------------------------
# The fakes refuse what the providers refuse


def test_the_graph_fake_refuses_the_query_shapes_graph_refuses(entra: Directory) -> None:
    fake = entra.fake
    trust = ssl.create_default_context(cafile=str(fake.ca_file))
    token = httpx.post(
        f"{fake.base}/{fake.tenant}/oauth2/v2.0/token",
        data={
            "client_id": fake.client_id,
            "client_secret": fake.client_secret,
            "grant_type": "client_credentials",
            "scope": f"{fake.base}/.default",
        },
        verify=trust,
    ).json()["access_token"]
    users = f"{fake.base}/v1.0/groups/{entra.group}/transitiveMembers/microsoft.graph.user"
    eventual = {"Authorization": f"Bearer {token}", "ConsistencyLevel": "eventual"}
    plain = {"Authorization": f"Bearer {token}"}

    def ask(url: str, headers: dict[str, str], **params: str) -> tuple[int, str]:
        # (no params at all for a next link: httpx would replace its query with an empty one)
        answer = httpx.get(url, params=params or None, headers=headers, verify=trust)
        return answer.status_code, answer.json().get("error", {}).get("code", "")

    # The cast is an advanced query: the header and $count=true, both.
    assert ask(users, plain, **{"$count": "true"}) == (400, "Request_UnsupportedQuery")
    assert ask(users, eventual) == (400, "Request_UnsupportedQuery")
    assert ask(users, eventual, **{"$count": "true"})[0] == 200
    # $filter on the relationship is refused even as an advanced query.
    filtered = {"$count": "true", "$filter": "accountEnabled eq true"}
    assert ask(users, eventual, **filtered) == (400, "Request_UnsupportedQuery")
    # Properties users do not have, and pages larger than 999.
    assert ask(users, eventual, **{"$count": "true", "$select": "id,mailboxSettings"}) == (
        400,
        "Request_BadRequest",
    )
    assert ask(users, eventual, **{"$count": "true", "$top": "1000"}) == (400, "Request_BadRequest")
    # Paging: the next link carries the query; every page needs the header again.
    first = httpx.get(
        users,
        params={"$count": "true", "$top": "1", "$select": "id,mail"},
        headers=eventual,
        verify=trust,
    ).json()
    following = first["@odata.nextLink"]
    assert first["@odata.count"] == 5 and "%24select=id%2Cmail" in following
    assert ask(following, plain) == (400, "Request_UnsupportedQuery")
    assert ask(following, eventual)[0] == 200
    # A group named by mail is found with the documented filter; other filters are refused.
    groups = f"{fake.base}/v1.0/groups"
    found = httpx.get(
        groups,
        params={"$filter": f"mail eq '{GROUP}'", "$select": "id"},
        headers=plain,
        verify=trust,
    ).json()
    assert found["value"] == [{"id": entra.group}]
    assert ask(groups, plain, **{"$filter": "startswith(mail,'r')"}) == (
        400,
        "Request_UnsupportedQuery",
    )
    # Throttling answers with Retry-After, as the rest of the fake does.
    fake.fail_next("/transitiveMembers", 429, "TooManyRequests", retry_after=3)
    throttled = httpx.get(users, params={"$count": "true"}, headers=eventual, verify=trust)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "3"


def test_the_workspace_fake_refuses_what_the_admin_sdk_refuses(
    workspace: tuple[GoogleFake, Path],
) -> None:
    fake, config = workspace
    settings = load_settings(config)
    from google.oauth2 import service_account  # noqa: PLC0415 - the test's own client

    info = json.loads(Path(settings.mailboxes_from[0].directory["key_file"]).read_text())  # type: ignore[index]
    creds = service_account.Credentials.from_service_account_info(
        {**info, "token_uri": fake.token_uri},
        scopes=["https://www.googleapis.com/auth/admin.directory.group.member.readonly"],
    ).with_subject("it-admin@nordljus.se")
    from google.auth.transport.requests import Request  # noqa: PLC0415

    creds.refresh(Request())
    headers = {"Authorization": f"Bearer {creds.token}"}
    members = f"{fake.url}admin/directory/v1/groups/{GROUP}/members"
    assert httpx.get(members, params={"maxResults": "500"}, headers=headers).status_code == 400
    assert httpx.get(members, params={"maxResults": "2"}, headers=headers).json()["nextPageToken"]
    # The scope covers members.list, not users.get.
    user = f"{fake.url}admin/directory/v1/users/{LISA}"
    assert httpx.get(user, headers=headers).status_code == 403
