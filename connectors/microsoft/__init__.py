"""Microsoft 365: calendar source and draft sink over Microsoft Graph, signed in with msal.

- ``options``: ``SourceOptions`` / ``SinkOptions`` as the configuration holds them;
- ``client``: sign-in and throttling-aware HTTP, shared by every mailbox of one app registration;
- ``calendar``: ``GraphCalendarSource`` (``calendarView/delta`` over a sliding window);
- ``mail``: ``GraphSink`` (drafts carrying the key as an extended property, mailbox knowledge);
- ``zones``: Windows time-zone names to IANA.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from recruitmail.connectors.microsoft.calendar import GraphCalendarSource
from recruitmail.connectors.microsoft.client import GraphClient, shared_client, token_cache_path
from recruitmail.connectors.microsoft.mail import KEY_PROPERTY, GraphSink
from recruitmail.connectors.microsoft.options import GraphOptions, SinkOptions, SourceOptions
from recruitmail.contracts.connector import ConnectorContext
from recruitmail.contracts.errors import ConfigError

__all__ = [
    "KEY_PROPERTY",
    "GraphCalendarSource",
    "GraphSink",
    "SinkOptions",
    "SourceOptions",
    "device_code_login",
    "open_sink",
    "open_source",
]


def open_source(options: SourceOptions, context: ConnectorContext) -> GraphCalendarSource:
    """The recruiter's Outlook calendar as a ``CalendarSource``."""
    return GraphCalendarSource(shared_client(options, context.state_dir), options, context)


def open_sink(options: SinkOptions, context: ConnectorContext) -> GraphSink:
    """The recruiter's Outlook mailbox as a ``MailboxSink`` with every optional capability."""
    return GraphSink(shared_client(options, context.state_dir), options, context)


def device_code_login(
    options: GraphOptions, print_fn: Callable[[str], None], state_dir: Path | None = None
) -> None:
    """Sign one recruiter in with the device-code flow and store the token cache (0600 or keyring).

    ``print_fn`` shows the sign-in instructions (the URL and the code) to the person at the terminal.
    """
    if options.auth != "delegated":
        raise ConfigError(
            'recruitmail login microsoft is for auth = "delegated"; an app-only mailbox signs in '
            "with its client secret or certificate"
        )
    cache = token_cache_path(options, state_dir)
    client = GraphClient(options, cache)
    try:
        who = client.tokens.device_login(print_fn)
    finally:
        client.close()
    print_fn(f"Signed in{' as ' + who if who else ''}; the token cache is {cache}")
