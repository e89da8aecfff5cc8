"""Sign-in to Google: a service account with domain-wide delegation (impersonating the recruiter)
or one recruiter's installed-app OAuth refresh token, stored by ``installed_app_login``.

A grant carries its credentials and, for error messages, who it is and how an administrator fixes
a refusal (never a candidate).
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

from google.oauth2 import credentials as oauth_credentials
from google.oauth2 import service_account

from recruitmail.connectors.google.options import DEFAULT_TOKEN_URI, GoogleOptions, all_scopes
from recruitmail.contracts.connector import ConnectorContext
from recruitmail.contracts.errors import AuthError, ConfigError
from recruitmail.contracts.secrets import load_secret


def _read_json_secret(options: GoogleOptions, what: str) -> dict[str, Any]:
    if options.key_file is not None:
        try:
            text = options.key_file.expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{what}: cannot read {options.key_file} ({exc.strerror})") from None
    elif options.credentials is not None:
        text = load_secret(options.credentials, what)
    else:
        raise ConfigError(f"{what}: set key_file or credentials")
    try:
        data = json.loads(text)
    except ValueError:
        raise ConfigError(f"{what}: the key is not JSON; download it again from Google") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what}: the key is not a JSON object")
    return data


def default_token_file(context: ConnectorContext) -> Path:
    """Where ``installed_app_login`` keeps a recruiter's refresh token by default."""
    safe = re.sub(r"[^a-z0-9@._-]", "_", context.mailbox.lower())
    return context.state_dir / f"google-token-{safe}.json"


@dataclass(frozen=True)
class _Grant:
    credentials: Any
    who: str  # names the grant in error messages (never a candidate)
    how_to_fix: str


def _grant(options: GoogleOptions, context: ConnectorContext, scopes: list[str]) -> _Grant:
    if options.auth == "service_account":
        info = _read_json_secret(options, "google service account key")
        if info.get("type") != "service_account":
            raise ConfigError(
                "google service account key: this JSON is not a service account key "
                f"(type {info.get('type')!r}); create a key under IAM → Service accounts → Keys"
            )
        if options.token_uri:
            info = {**info, "token_uri": options.token_uri}
        subject = options.subject or context.mailbox
        try:
            creds = service_account.Credentials.from_service_account_info(  # type: ignore[no-untyped-call]
                info, scopes=scopes
            )
        except (ValueError, KeyError) as exc:
            raise ConfigError(f"google service account key: unusable ({exc})") from None
        creds = creds.with_subject(subject)
        client_id = info.get("client_id", "?")
        return _Grant(
            creds,
            f"service account {info.get('client_email', '?')} acting as {subject}",
            f"in the Google Admin console (Security → Access and data control → API controls → "
            f"Domain-wide delegation) client ID {client_id} must be granted "
            f"{', '.join(scopes)}; the user must exist and not be suspended, and the key must "
            "not be deleted or disabled",
        )
    token_file = options.token_file or default_token_file(context)
    try:
        stored = json.loads(token_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AuthError(
            f"google: no sign-in stored at {token_file}; run `recruitmail login google`"
        ) from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"google token_file {token_file}: unreadable ({exc})") from None
    token_uri = options.token_uri or stored.get("token_uri") or DEFAULT_TOKEN_URI
    # from_authorized_user_file would ignore token_uri: build the credentials ourselves.
    creds = oauth_credentials.Credentials(  # type: ignore[no-untyped-call]
        None,
        refresh_token=stored.get("refresh_token"),
        token_uri=token_uri,
        client_id=stored.get("client_id"),
        client_secret=stored.get("client_secret"),
        scopes=scopes,
    )
    return _Grant(
        creds,
        f"the OAuth sign-in of {context.mailbox}",
        f"run `recruitmail login google` again; it asks for {', '.join(all_scopes(options))}",
    )


def installed_app_login(
    options: GoogleOptions,
    print_fn: Callable[[str], None],
    context: ConnectorContext | None = None,
    *,
    port: int = 0,
    wait_seconds: float = 600.0,
) -> None:
    """Ask one recruiter's consent in a browser and store the refresh token (mode 0600).

    Console friendly: it prints the address to open; Google then sends the browser back to a
    one-shot listener on 127.0.0.1 (forward the port with ``ssh -L`` on a remote machine).
    """
    from google_auth_oauthlib.flow import Flow

    client = _read_json_secret(options, "google OAuth client")
    section = client.get("installed") or client.get("web")
    if not isinstance(section, dict):
        raise ConfigError(
            "google OAuth client: expected the JSON of an OAuth client of type 'Desktop app'"
        )
    if options.token_uri:
        section = {**section, "token_uri": options.token_uri}
    token_file = options.token_file
    if token_file is None:
        if context is None:
            raise ConfigError("google login: set token_file (no mailbox given)")
        token_file = default_token_file(context)

    received: dict[str, str] = {}
    done = threading.Event()

    class Redirect(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            received["path"] = self.path
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            self.wfile.write(b"recruitmail: signed in. You may close this window.\n")
            done.set()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = HTTPServer(("127.0.0.1", port), Redirect)
    redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/"
    scopes = all_scopes(options)
    flow = Flow.from_client_config({"installed": section}, scopes=scopes, redirect_uri=redirect_uri)
    url, _ = flow.authorization_url(access_type="offline", prompt="consent")
    print_fn(
        "Open this address in a browser and allow recruitmail access:\n"
        f"  {url}\n"
        f"Google then returns the browser to {redirect_uri}; on a remote machine forward that "
        f"port first (ssh -L {server.server_address[1]}:127.0.0.1:{server.server_address[1]} …)."
    )
    worker = threading.Thread(target=server.serve_forever, daemon=True)
    worker.start()
    try:
        if not done.wait(wait_seconds):
            raise AuthError("google login: no answer from the browser in time; run it again")
    finally:
        server.shutdown()
        server.server_close()
    try:
        # oauthlib insists on https for the redirect it parses; the listener is loopback http.
        flow.fetch_token(
            authorization_response=redirect_uri.replace("http:", "https:", 1)
            + received["path"].lstrip("/")
        )
    except Exception as exc:  # oauthlib and google-auth raise many types; all mean "refused"
        raise AuthError(f"google login: the consent was not accepted ({exc})") from None
    creds = flow.credentials
    if not creds.refresh_token:
        raise AuthError(
            "google login: Google returned no refresh token; remove the app's access "
            "in the Google account and run login again"
        )
    stored = {
        "type": "authorized_user",
        "client_id": section.get("client_id"),
        "client_secret": section.get("client_secret"),
        "refresh_token": creds.refresh_token,
        "token_uri": section.get("token_uri", DEFAULT_TOKEN_URI),
        "scopes": scopes,
    }
    _write_private(token_file, json.dumps(stored, indent=2) + "\n")
    print_fn(f"Signed in; the refresh token is stored in {token_file} (mode 0600).")


def _write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
