"""The options of the Google connector, as a mailbox's ``source`` and ``sink`` tables hold them,
and the least scopes each feature needs."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCOPE_PREFIX = "https://www.googleapis.com/auth/"
CALENDAR_EVENTS_READONLY = SCOPE_PREFIX + "calendar.events.readonly"
CALENDAR_READONLY = SCOPE_PREFIX + "calendar.readonly"
GMAIL_COMPOSE = SCOPE_PREFIX + "gmail.compose"
GMAIL_METADATA = SCOPE_PREFIX + "gmail.metadata"
GMAIL_MODIFY = SCOPE_PREFIX + "gmail.modify"
GMAIL_SETTINGS_BASIC = SCOPE_PREFIX + "gmail.settings.basic"

DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
DEFAULT_CALENDAR_ENDPOINT = "https://www.googleapis.com/"
DEFAULT_GMAIL_ENDPOINT = "https://gmail.googleapis.com/"


class GoogleOptions(BaseModel):
    """Options shared by the Google source and sink (one table may serve both)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    auth: Literal["service_account", "oauth"] = Field(
        "service_account",
        description="service_account: a key with domain-wide delegation (organisations); "
        "oauth: one recruiter's own consent, stored by `recruitmail login google`.",
    )
    key_file: Path | None = Field(
        None,
        description="service_account: the JSON key file. oauth: the OAuth client file "
        "(type Desktop app) used by `recruitmail login google`.",
    )
    credentials: str | None = Field(
        None,
        description="The same JSON as key_file, as a secret reference "
        "(credential:NAME, file:/path or env:NAME). Use one of key_file and credentials.",
    )
    token_file: Path | None = Field(
        None,
        description="oauth: where the refresh token is kept (mode 0600); default "
        "STATE_DIR/google-token-<mailbox>.json.",
    )
    subject: str | None = Field(
        None, description="service_account: the user to impersonate; default the mailbox address."
    )
    calendar_id: str = Field("primary", description="The calendar to read.")
    calendar_scope: Literal["calendar.events.readonly", "calendar.readonly"] = Field(
        "calendar.events.readonly", description="The calendar scope to ask for."
    )
    calendar_endpoint: str | None = Field(
        None, description="Root URL of the Calendar API (private endpoints, tests)."
    )
    gmail_endpoint: str | None = Field(
        None, description="Root URL of the Gmail API (private endpoints, tests)."
    )
    token_uri: str | None = Field(
        None, description="OAuth token endpoint; default the key file's token_uri, else Google's."
    )
    ca_file: Path | None = Field(
        None,
        description="CA bundle for TLS; default $SSL_CERT_FILE, else $REQUESTS_CA_BUNDLE, "
        "else the system's.",
    )
    obsolete_label: str = Field(
        "recruitmail/obsolete", description="Gmail label put on drafts that are no longer wanted."
    )
    label_obsolete: bool = Field(
        False, description="Label obsolete drafts (needs the gmail.modify scope)."
    )
    read_vacation: bool = Field(
        False, description="Read the vacation responder (needs gmail.settings.basic)."
    )
    read_sent: bool = Field(
        False,
        description="Read Sent mail headers: last contact, sent vs deleted (needs gmail.metadata).",
    )
    page_size: int = Field(250, ge=1, le=2500, description="Events per page of events.list.")
    timeout_seconds: float = Field(60.0, gt=0, le=600, description="Timeout of one HTTP request.")
    max_attempts: int = Field(
        6, ge=1, le=20, description="Tries of one call when Google throttles or fails."
    )
    max_backoff_seconds: float = Field(
        32.0, gt=0, le=600, description="Longest wait between two tries."
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> GoogleOptions:
        if self.key_file is not None and self.credentials is not None:
            raise ValueError("set key_file or credentials, not both")
        if self.auth == "service_account" and self.key_file is None and self.credentials is None:
            raise ValueError(
                "auth = service_account needs the key: key_file = PATH or credentials = credential:NAME"
            )
        return self


class SourceOptions(GoogleOptions):
    """Options of the Google Calendar source."""


class SinkOptions(GoogleOptions):
    """Options of the Gmail draft sink."""


def calendar_scopes(options: GoogleOptions) -> list[str]:
    """The scopes the calendar source asks for."""
    return [SCOPE_PREFIX + options.calendar_scope]


def gmail_scopes(options: GoogleOptions) -> list[str]:
    """The least Gmail scopes that serve the features the options switch on."""
    scopes = [GMAIL_COMPOSE]
    if options.read_vacation:
        scopes.append(GMAIL_SETTINGS_BASIC)
    if options.label_obsolete:
        # gmail.modify covers what gmail.metadata would add; asking for both would make Google
        # apply the narrower metadata rules to every read.
        scopes.append(GMAIL_MODIFY)
    elif options.read_sent:
        scopes.append(GMAIL_METADATA)
    return scopes


def all_scopes(options: GoogleOptions) -> list[str]:
    """Every scope the options need: what the administrator grants, what login asks for."""
    return calendar_scopes(options) + gmail_scopes(options)
