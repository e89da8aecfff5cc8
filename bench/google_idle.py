"""Print how many Google API requests one idle mailbox costs per reconcile cycle (target: 1).

Runs against the loopback fake: a calendar with a few interviews is synced once, then the cycle
is repeated with nothing changing. Measured twice: the calendar source alone, and (when the
provider registry knows "google") whole ``recruitmail once`` passes through the CLI. The figure is
then set against Google's published per-user limits at the daemon's default interval (see
docs/BENCHMARKS.md, "Request budget per mailbox").
"""

from __future__ import annotations

import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recruitmail import connectors  # noqa: E402
from recruitmail.connectors import google  # noqa: E402
from recruitmail.contracts.connector import ConnectorContext  # noqa: E402
from recruitmail.contracts.models import Period  # noqa: E402
from recruitmail.daemon.settings import Service  # noqa: E402
from tests.fakes.google import GoogleFake  # noqa: E402
from tests.scenario import two_weeks  # noqa: E402

CYCLES = 20
CALENDAR_PER_USER_MINUTE = 600  # developers.google.com/workspace/calendar/api/guides/quota


def source_only(fake: GoogleFake, key: Path, root: Path) -> float:
    context = ConnectorContext(
        mailbox=two_weeks.RECRUITER.address,
        mailbox_name="Lisa Ek",
        time_zone="Europe/Stockholm",
        company_domains=("nordljus.se",),
        state_dir=root,
    )
    options = google.SourceOptions(key_file=key, calendar_endpoint=fake.url)
    source = google.open_source(options, context)
    now = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    cursor = source.sync(None, Period(now - timedelta(days=30), now + timedelta(days=90))).cursor
    before = len(fake.api_requests())
    for cycle in range(CYCLES):
        moment = now + timedelta(minutes=5 * cycle)
        window = Period(moment - timedelta(days=30), moment + timedelta(days=90))
        cursor = source.sync(cursor, window).cursor
    source.close()
    return (len(fake.api_requests()) - before) / CYCLES


def through_the_cli(fake: GoogleFake, key: Path, root: Path) -> float:
    from recruitmail.daemon.cli import main

    config = root / "recruitmail.toml"
    config.write_text(
        two_weeks.CONFIG.replace("{state_dir}", str(root / "state"))
        + f'\n[mailboxes.source]\ntype = "google"\nkey_file = "{key}"\n'
        f'calendar_endpoint = "{fake.url}"\n'
        f'\n[mailboxes.sink]\ntype = "google"\nkey_file = "{key}"\ngmail_endpoint = "{fake.url}"\n',
        encoding="utf-8",
    )
    start = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
    main(["--config", str(config), "once", "--now", start.isoformat()])  # first sync, drafts
    main(["--config", str(config), "once", "--now", start.isoformat()])  # settles
    before = len(fake.api_requests())
    for cycle in range(CYCLES):
        moment = start + timedelta(seconds=cycle)
        main(["--config", str(config), "once", "--now", moment.isoformat()])
    return (len(fake.api_requests()) - before) / CYCLES


def main() -> int:
    fake = GoogleFake().start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            user = two_weeks.RECRUITER.address
            fake.add_user(user)
            info, client_id = fake.create_service_account()
            fake.grant_delegation(
                client_id, [google.CALENDAR_EVENTS_READONLY, google.GMAIL_COMPOSE]
            )
            key = root / "key.json"
            key.write_text(json.dumps(info))
            key.chmod(0o600)
            for change in two_weeks.CHANGES:
                if change.action == "put" and change.spec is not None:
                    fake.put(user, change.spec)
            idle = source_only(fake, key, root)
            print(f"google calendar source, idle: {idle:.2f} requests/cycle")
            interval = Service.model_fields["interval_seconds"].default
            per_minute = idle * 60 / interval
            print(
                f"at the default interval ({interval} s): {per_minute:.2f} Calendar requests per "
                f"minute per mailbox, {100 * per_minute / CALENDAR_PER_USER_MINUTE:.2f} % of the "
                f"{CALENDAR_PER_USER_MINUTE} per user and minute Google allows"
            )
            if "google" in connectors.PROVIDERS:
                cli = through_the_cli(fake, key, root)
                print(f"google mailbox via `recruitmail once`, idle: {cli:.2f} requests/cycle")
            else:
                print("(the CLI measurement needs the provider registry line for google)")
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
