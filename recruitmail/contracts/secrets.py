"""Secrets never live in the TOML file itself: it holds a reference to where the secret is.

A reference is one of:
- ``credential:NAME`` — a systemd credential: ``$CREDENTIALS_DIRECTORY/NAME`` (LoadCredential=);
- ``file:/path/to/file`` — a file readable only by the service;
- ``env:NAME`` — an environment variable (for containers and tests).
"""

from __future__ import annotations

import os
from pathlib import Path

from recruitmail.contracts.errors import ConfigError


def load_secret(reference: str, what: str) -> str:
    """Read the secret ``reference`` points at; ``what`` names it in error messages."""
    kind, _, name = reference.partition(":")
    if not name:
        raise ConfigError(
            f"{what}: {reference!r} is not a secret reference; use credential:NAME, file:/path or env:NAME"
        )
    if kind == "env":
        value = os.environ.get(name)
        if value is None:
            raise ConfigError(f"{what}: environment variable {name} is not set")
        return value.strip()
    if kind == "credential":
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise ConfigError(
                f"{what}: credential:{name} needs $CREDENTIALS_DIRECTORY (LoadCredential={name}:… in the unit)"
            )
        path = Path(directory) / name
    elif kind == "file":
        path = Path(name).expanduser()
    else:
        raise ConfigError(f"{what}: unknown secret kind {kind!r}; use credential:, file: or env:")
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{what}: cannot read {path} ({exc.strerror})") from None
