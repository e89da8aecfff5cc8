"""Calendar sources and draft sinks, one module per provider, behind ``connectors.base``.

A provider module defines ``SourceOptions`` and ``open_source`` when it reads calendars, and
``SinkOptions`` and ``open_sink`` when it writes drafts. Adding a provider is one line here.
A provider whose organisation directory lists group members (``mailboxes_from``) has a
``directory`` module with ``DirectoryOptions`` and ``open_directory``, named in ``DIRECTORIES``.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any

from pydantic import ValidationError

from recruitmail.contracts.connector import (
    CalendarSource,
    ConnectorContext,
    GroupDirectory,
    MailboxSink,
)
from recruitmail.contracts.errors import ConfigError

PROVIDERS: dict[str, str] = {
    "ics": "recruitmail.connectors.ics",
    "maildir": "recruitmail.connectors.maildir",
    "microsoft": "recruitmail.connectors.microsoft",
    "google": "recruitmail.connectors.google",
    "caldav": "recruitmail.connectors.caldav",
    "imap": "recruitmail.connectors.imap",
}


DIRECTORIES: dict[str, str] = {
    "microsoft": "recruitmail.connectors.microsoft.directory",
    "google": "recruitmail.connectors.google.directory",
}
"""Providers whose organisation directory lists a group's members (``mailboxes_from``)."""


def _provider(name: str, role: str, where: str) -> ModuleType:
    module_name = (DIRECTORIES if role == "directory" else PROVIDERS).get(name)
    if module_name is None:
        known = DIRECTORIES if role == "directory" else PROVIDERS
        raise ConfigError(
            f"{where}.type: unknown provider {name!r}; known: {', '.join(sorted(known))}"
        )
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"{where}.type = {name!r} needs an optional package that is not installed ({exc.name}); "
            f"install recruitmail[{name}] or recruitmail[all]"
        ) from None
    if not hasattr(module, f"open_{role}"):
        raise ConfigError(f"{where}.type: provider {name!r} cannot serve as a {role}")
    return module


def _options(module: ModuleType, role: str, raw: dict[str, Any], where: str) -> Any:
    model = getattr(module, f"{role.capitalize()}Options")
    try:
        return model(**raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{where}.{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise ConfigError(problems) from None


def validate_options(name: str, role: str, raw: dict[str, Any], where: str) -> None:
    """Check a mailbox's source or sink options without opening anything."""
    _options(_provider(name, role, where), role, raw, where)


def open_source(
    name: str, raw: dict[str, Any], context: ConnectorContext, where: str
) -> CalendarSource:
    """Build the calendar source ``name`` from its options."""
    module = _provider(name, "source", where)
    source: CalendarSource = module.open_source(_options(module, "source", raw, where), context)
    return source


def open_sink(name: str, raw: dict[str, Any], context: ConnectorContext, where: str) -> MailboxSink:
    """Build the draft sink ``name`` from its options."""
    module = _provider(name, "sink", where)
    sink: MailboxSink = module.open_sink(_options(module, "sink", raw, where), context)
    return sink


def directory_options(name: str, raw: dict[str, Any]) -> dict[str, Any]:
    """Of a mailbox's source or sink options, those the directory of the same provider takes
    (the directory signs in with the same app unless ``mailboxes_from.directory`` says otherwise)."""
    model = _provider(name, "directory", "mailboxes_from").DirectoryOptions
    return {k: v for k, v in raw.items() if k in model.model_fields}


def validate_directory_options(name: str, raw: dict[str, Any], where: str) -> None:
    """Check a ``mailboxes_from`` entry's directory options without opening anything."""
    _options(_provider(name, "directory", where), "directory", raw, where)


def open_directory(
    name: str, raw: dict[str, Any], context: ConnectorContext, where: str
) -> GroupDirectory:
    """Build the organisation directory of provider ``name`` from its options."""
    module = _provider(name, "directory", where)
    directory: GroupDirectory = module.open_directory(
        _options(module, "directory", raw, where), context
    )
    return directory
