"""The options of the Microsoft 365 connector, as a mailbox's ``source`` and ``sink`` tables hold them."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

GRAPH_KEY_PROPERTY_GUID = "8f1d6b0e-2c4a-4f57-9a83-6e0c5b7d2a41"
"""Our fixed property-set GUID: the draft key lives in ``String {GUID} Name RecruitmailKey``."""


class GraphOptions(BaseModel):
    """Sign-in and transport options shared by the calendar source and the draft sink."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tenant: str = Field(description="Directory (tenant) id or verified domain of the organisation.")
    client_id: str = Field(description="Application (client) id of the app registration.")
    auth: Literal["app", "delegated"] = Field(
        "app",
        description="app: client credentials for many mailboxes; delegated: one recruiter's "
        "device-code sign-in (recruitmail login microsoft).",
    )
    client_secret: str | None = Field(
        None,
        description="Secret reference (credential:NAME, file:/path, env:NAME) to the client secret.",
    )
    key_file: Path | None = Field(
        None, description="PEM private key of the app's certificate (instead of a client secret)."
    )
    thumbprint: str | None = Field(
        None, description="SHA-1 thumbprint (hex) of the certificate whose key is key_file."
    )
    token_cache: Path | None = Field(
        None,
        description="Delegated sign-in token cache (mode 0600); default: the state directory.",
    )
    authority_host: str = Field(
        "https://login.microsoftonline.com",
        description="Sign-in host; national clouds use their own (e.g. https://login.microsoftonline.us).",
    )
    graph_endpoint: str = Field(
        "https://graph.microsoft.com",
        description="Graph host; national clouds use their own (e.g. https://graph.microsoft.us).",
    )
    user: str | None = Field(
        None, description="The Graph user (address or id) to read; default: the mailbox address."
    )
    ca_file: Path | None = Field(
        None,
        description="Extra CA bundle to trust (TLS inspection); default: SSL_CERT_FILE, "
        "REQUESTS_CA_BUNDLE or the system store.",
    )
    max_in_flight: int = Field(
        4, ge=1, le=4, description="Concurrent requests per mailbox (Outlook allows 4)."
    )
    max_attempts: int = Field(
        6,
        ge=1,
        le=20,
        description="Attempts per request when throttled or failing before giving up.",
    )
    timeout_seconds: float = Field(30.0, gt=0, le=600, description="Timeout of one HTTP request.")

    @field_validator("authority_host", "graph_endpoint")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError(f"{value!r} must be an https:// URL")
        return value.rstrip("/")

    @field_validator("client_secret")
    @classmethod
    def _reference(cls, value: str | None) -> str | None:
        if value is not None and value.partition(":")[0] not in ("credential", "file", "env"):
            raise ValueError(
                "put the secret in a file or systemd credential and write its reference here "
                "(credential:NAME, file:/path or env:NAME), never the secret itself"
            )
        return value

    @model_validator(mode="after")
    def _credentials(self) -> GraphOptions:
        if self.auth == "app":
            has_cert = self.key_file is not None and self.thumbprint is not None
            if (self.key_file is None) != (self.thumbprint is None):
                raise ValueError("a certificate needs both key_file and thumbprint")
            if has_cert == (self.client_secret is not None):
                raise ValueError(
                    'auth = "app" needs exactly one of client_secret or key_file + thumbprint'
                )
        return self


class SourceOptions(GraphOptions):
    """Options of the Microsoft 365 calendar source."""

    page_size: int = Field(
        50, ge=1, le=1000, description="Events per page (Prefer: odata.maxpagesize)."
    )
    slide_days: int = Field(
        14,
        ge=1,
        le=180,
        description="The synced window reaches this many days beyond the requested one; when the "
        "requested window's end passes the synced one, a fresh full sync starts.",
    )


class SinkOptions(GraphOptions):
    """Options of the Microsoft 365 draft sink."""

    category: str = Field("recruitmail", description="Outlook category every draft carries.")
    obsolete_category: str = Field(
        "recruitmail: obsolete", description="Category added to a draft that is no longer wanted."
    )
    directory_titles: bool = Field(
        False,
        description="Read panel members' job titles from the directory (needs User.Read.All).",
    )
    settings_ttl_seconds: int = Field(
        3600, ge=0, le=86400, description="How long mailbox settings (zone, absences) are reused."
    )
