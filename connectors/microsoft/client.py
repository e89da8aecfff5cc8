"""Sign-in (msal) and HTTP (httpx) to Microsoft Graph, shared by all mailboxes of one app registration.

One ``GraphClient`` serves every mailbox that uses the same app, tenant and endpoints, so they share
one connection pool. Tokens are shared wider still: one msal application and token cache per
(authority, tenant, client id, scopes) for the whole process, and for app-only sign-in the cache is
also kept in the state directory (mode 0600, replaced atomically) so that the next ``once``
process reuses the token instead of signing in again.

Each request takes one of its mailbox's ``max_in_flight`` slots (Outlook allows 4 concurrent
requests per mailbox). A ``Retry-After`` is read from every answer before anything else is done
with it, capped at an hour, and becomes a *wait* for that mailbox: no request to the mailbox leaves
before it has elapsed, whichever call, source or sink, pass or process (the waits are kept in the
state directory too). A short wait is slept through; a long one ends the call with
``TransientError(retry_after=…)`` for the scheduler. A request that may have reached the server
without a clear answer (a create answered 5xx, or a timeout after sending) is never repeated
blindly: it raises ``AmbiguousError`` (with the ``retry_after`` Graph gave) and the caller looks the
key up first. A create answered 429 was refused unprocessed (Graph's throttling guidance: "the
requests fail"), so it is sent again once the wait is over — but only if the mailbox's
``may_write`` still allows it then: every attempt of a write asks it right before it leaves.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msal

from recruitmail.connectors.microsoft.options import GraphOptions
from recruitmail.connectors.tls import tls_context
from recruitmail.contracts.errors import (
    AmbiguousError,
    AuthError,
    ConfigError,
    PermanentError,
    TransientError,
)
from recruitmail.contracts.limits import MAX_RETRY_AFTER, capped_retry_after
from recruitmail.contracts.secrets import load_secret

log = logging.getLogger(__name__)
# httpx logs every URL at INFO, and a Sent Items query carries a candidate's address in its
# $filter: keep httpx's own lines at WARNING and above.
logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger("httpx").level))

# Hosts msal knows how to validate; any other authority (a private cloud, a test) skips discovery.
KNOWN_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login-us.microsoftonline.com",
    }
)
DELEGATED_PERMISSIONS = ("Calendars.Read", "Mail.ReadWrite", "MailboxSettings.Read")
THROTTLE_STATUSES = frozenset({429, 503, 504})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_BACKOFF_BASE = 1.0
_BACKOFF_CAP = 60.0
# A longer wait than this is handed to the scheduler rather than slept through here.
MAX_INLINE_WAIT = 60.0
WAITS_FILE = "graph-waits.json"
TOKEN_MARGIN = 300.0
"""Seconds before its expiry at which a kept access token is no longer used: msal's own rule
("expires_in < 5*60: consider it expired"), so a kept token is used exactly while msal would
have served it from its cache."""
BATCH_LIMIT = 20
"""Requests in one JSON batch (learn.microsoft.com/graph/json-batching, "Batch size limitations")."""

Sleeper = Callable[[float], None]


@dataclass(frozen=True)
class BatchGet:
    """One GET to send inside a ``$batch``: ``key`` names its answer, ``link`` is a path or a link
    Graph gave (absolute), ``prefer`` the request's own ``Prefer`` preferences."""

    key: str
    mailbox: str
    link: str
    prefer: tuple[str, ...] = ()


def error_of(response: httpx.Response) -> tuple[str, str]:
    """The Graph (or OAuth) error code and message of an error response, when it has them."""
    try:
        body = response.json()
    except ValueError:
        return "", response.reason_phrase
    if isinstance(body, dict):
        inner = body.get("error")
        if isinstance(inner, dict):
            return str(inner.get("code", "")), str(inner.get("message", ""))
        if isinstance(inner, str):
            return inner, str(body.get("error_description", ""))
    return "", response.reason_phrase


def json_of(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object of a successful response."""
    try:
        body = response.json()
    except ValueError:
        raise TransientError(f"Graph answered {what} with something that is not JSON") from None
    if not isinstance(body, dict):
        raise TransientError(f"Graph answered {what} with unexpected JSON")
    return body


def _scrub(text: str) -> str:
    """A provider message without anything that looks like an address (it may echo a query)."""
    return " ".join("…" if "@" in word else word for word in text.split())[:200]


class MailboxWaits:
    """When each mailbox may be asked again, as Graph's ``Retry-After`` said; kept in a file in the
    state directory so that the next process honours it as well (wall-clock times)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._until: dict[str, float] = {}
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                self._until = {str(k): float(v) for k, v in data.items()}
            except (OSError, ValueError, AttributeError) as exc:
                log.warning("ignoring unreadable Graph wait file %s (%s)", path, exc)

    def remaining(self, mailbox: str) -> float:
        with self._lock:
            return self._until.get(mailbox, 0.0) - time.time()

    def wait(self, mailbox: str, seconds: float) -> None:
        until = time.time() + seconds
        with self._lock:
            if until <= self._until.get(mailbox, 0.0):
                return
            self._until[mailbox] = until
            now = time.time()
            self._until = {k: v for k, v in self._until.items() if v > now}
            snapshot = dict(self._until)
            if self.path is not None:
                try:
                    _write_private(self.path, json.dumps(snapshot))
                except OSError as exc:
                    log.warning("cannot keep the Graph wait in %s (%s)", self.path, exc)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the service user only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


_WAITS: dict[str, MailboxWaits] = {}
_WAITS_LOCK = threading.Lock()


def mailbox_waits(state_dir: Path | None) -> MailboxWaits:
    """The process-wide waits kept in ``state_dir`` (one object per directory)."""
    key = str(state_dir)
    with _WAITS_LOCK:
        waits = _WAITS.get(key)
        if waits is None:
            waits = _WAITS[key] = MailboxWaits(state_dir / WAITS_FILE if state_dir else None)
        return waits


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class _MsalHttp:
    """msal's ``http_client``: sign-in uses the same httpx client (CA bundle, proxies) as Graph."""

    def __init__(self, client: httpx.Client) -> None:
        self._client = client

    def post(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        data: Any = None,
        headers: Mapping[str, Any] | None = None,
        **_: Any,
    ) -> httpx.Response:
        body: dict[str, Any]
        if isinstance(data, Mapping):
            # msal hands some values (the signed client assertion) over as bytes; httpx would
            # send their repr.
            body = {"data": {k: v.decode() if isinstance(v, bytes) else v for k, v in data.items()}}
        else:
            body = {"content": data}
        return self._client.post(url, params=params, headers=_clean(headers), **body)

    def get(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, Any] | None = None,
        **_: Any,
    ) -> httpx.Response:
        return self._client.get(url, params=params, headers=_clean(headers))

    def close(self) -> None:
        """The httpx client belongs to ``GraphClient``, which closes it."""


def _clean(headers: Mapping[str, Any] | None) -> dict[str, str]:
    return {k: str(v) for k, v in (headers or {}).items() if v is not None}


def token_cache_path(options: GraphOptions, state_dir: Path | None) -> Path:
    """Where the delegated sign-in's token cache lives."""
    if options.token_cache is not None:
        return options.token_cache.expanduser()
    if state_dir is None:
        raise ConfigError("token_cache: set a path for the Microsoft sign-in's token cache")
    return state_dir / f"msal-{options.client_id}.cache"


class _FileTokenCache:
    """A token cache in a file only the service user can read (mode 0600), written atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cache = msal.SerializableTokenCache()
        if path.exists():
            try:
                self.cache.deserialize(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"token_cache {path}: cannot read it ({exc})") from None

    def save(self) -> None:
        if not self.cache.has_state_changed:
            return
        _write_private(self.path, self.cache.serialize())
        self.cache.has_state_changed = False


def persistent_cache(path: Path) -> tuple[Any, Callable[[], None]]:
    """An msal token cache persisted at ``path``: encrypted where the platform keyring works.

    Returns the cache and a function that saves it (a no-op for the self-saving encrypted one).
    """
    try:
        from msal_extensions import (  # type: ignore[import-untyped,unused-ignore]
            PersistedTokenCache,
            build_encrypted_persistence,
        )

        persistence = build_encrypted_persistence(str(path))
        # On Linux this needs a running Secret Service; prove it works before trusting it.
        persistence.save(persistence.load() if _loads(persistence) else "{}")
        return PersistedTokenCache(persistence), lambda: None
    except Exception as exc:  # noqa: BLE001 - any keyring failure means: use the 0600 file
        log.debug("encrypted token cache unavailable (%s); using a 0600 file", exc)
    file_cache = _FileTokenCache(path)
    return file_cache.cache, file_cache.save


def _loads(persistence: Any) -> bool:
    try:
        persistence.load()
    except Exception:  # noqa: BLE001 - nothing stored yet
        return False
    return True


def app_cache_path(options: GraphOptions, state_dir: Path | None) -> Path | None:
    """Where an app-only sign-in's token cache is kept between processes (none without a state
    directory). One file per authority, tenant and app: the tokens of one app registration."""
    if state_dir is None:
        return None
    identity = (
        f"{options.authority_host}|{options.tenant}|{options.client_id}|{options.graph_endpoint}"
    )
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:16]
    return state_dir / f"msal-app-{digest}.cache"


def _kept_until(result: Mapping[str, Any]) -> float:
    """The monotonic instant until which msal would serve this token from its cache: its
    ``expires_in`` less ``TOKEN_MARGIN``, and not past its ``refresh_in``/``refresh_on``."""
    now = time.monotonic()
    try:
        until = now + float(result.get("expires_in", 0)) - TOKEN_MARGIN
        if "refresh_in" in result:
            until = min(until, now + float(result["refresh_in"]))
        if "refresh_on" in result:
            until = min(until, now + float(result["refresh_on"]) - time.time())
    except (TypeError, ValueError):
        return now  # an answer we cannot read: ask msal again next time
    return until


class _Tokens:
    """msal behind a lock: one token for every mailbox, source and sink that shares the app.

    It owns its HTTP client (CA bundle, proxies as for Graph): it lives as long as the process,
    whatever becomes of the Graph clients that use it.
    """

    def __init__(
        self, options: GraphOptions, cache_path: Path | None, app_cache: Path | None = None
    ) -> None:
        self.options = options
        self.authority = f"{options.authority_host}/{options.tenant}"
        self._client = httpx.Client(
            verify=tls_context(options.ca_file),
            trust_env=True,
            timeout=options.timeout_seconds,
            follow_redirects=False,
        )
        self._http = _MsalHttp(self._client)
        self._lock = threading.Lock()
        self._app: Any = None
        self._cache: Any = None
        self._save: Callable[[], None] = lambda: None
        self._cache_path = cache_path
        self._app_cache = app_cache
        # The last token msal gave, per account (one for app-only sign-in), with the monotonic
        # instant until which msal would have served it from its cache: every Graph request
        # asks for a token, and asking msal costs a cache search under a lock each time.
        self._kept: dict[str, tuple[str, float]] = {}

    @property
    def scopes(self) -> list[str]:
        graph = self.options.graph_endpoint
        if self.options.auth == "app":
            return [f"{graph}/.default"]
        return [f"{graph}/{permission}" for permission in DELEGATED_PERMISSIONS]

    def _discovery(self) -> dict[str, Any]:
        host = self.options.authority_host.removeprefix("https://").split("/")[0].lower()
        if host in KNOWN_AUTHORITY_HOSTS:
            return {}
        return {"instance_discovery": False, "validate_authority": False}

    def _credential(self) -> Any:
        options = self.options
        if options.client_secret is not None:
            return load_secret(options.client_secret, "microsoft client_secret")
        assert options.key_file is not None and options.thumbprint is not None
        try:
            key = options.key_file.expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(
                f"key_file {options.key_file}: cannot read it ({exc.strerror})"
            ) from None
        return {"private_key": key, "thumbprint": options.thumbprint.replace(":", "")}

    def app(self) -> Any:
        """The msal application, built on first use (building it fetches the authority's metadata)."""
        if self._app is not None:
            return self._app
        options = self.options
        try:
            if options.auth == "app":
                # msal serves acquire_token_for_client from its cache while the token is valid;
                # a serialized cache lets the next process do the same (msal's "token cache
                # serialization" for confidential clients: one cache per app and tenant).
                if self._app_cache is not None:
                    try:
                        file_cache = _FileTokenCache(self._app_cache)
                    except ConfigError as exc:
                        log.warning("starting with an empty token cache: %s", exc)
                        self._app_cache.unlink(missing_ok=True)
                        file_cache = _FileTokenCache(self._app_cache)
                    self._cache, self._save = file_cache.cache, file_cache.save
                else:
                    self._cache = msal.SerializableTokenCache()
                self._app = msal.ConfidentialClientApplication(
                    options.client_id,
                    client_credential=self._credential(),
                    authority=self.authority,
                    http_client=self._http,
                    token_cache=self._cache,
                    **self._discovery(),
                )
            else:
                if self._cache_path is None:
                    raise ConfigError("token_cache: a delegated sign-in needs a token cache path")
                self._cache, self._save = persistent_cache(self._cache_path)
                self._app = msal.PublicClientApplication(
                    options.client_id,
                    authority=self.authority,
                    http_client=self._http,
                    token_cache=self._cache,
                    **self._discovery(),
                )
        except httpx.HTTPError as exc:
            raise TransientError(
                f"cannot reach the sign-in service {self.authority}: {exc}"
            ) from None
        except ValueError as exc:
            raise AuthError(f"sign-in authority {self.authority} is not usable: {exc}") from None
        return self._app

    def token(self, account_hint: str | None, *, fresh: bool = False) -> str:
        """A bearer token; ``fresh`` drops the cached one first (after a 401).

        The token msal gave last is kept and handed out again until ``TOKEN_MARGIN`` before its
        expiry (or its ``refresh_in``), when msal is asked again.
        """
        account = "" if self.options.auth == "app" else (account_hint or "").lower()
        if not fresh:
            kept = self._kept.get(account)
            if kept is not None and time.monotonic() < kept[1]:
                return kept[0]
        with self._lock:
            if fresh:
                self._kept.pop(account, None)
            try:
                result = self._acquire(account_hint, fresh)
            except httpx.HTTPError as exc:
                raise TransientError(
                    f"cannot reach the sign-in service {self.authority}: {exc}"
                ) from None
            except msal.exceptions.MsalServiceError as exc:
                raise TransientError(
                    f"the sign-in service {self.authority} failed: {exc}"
                ) from None
            self._save()
            if result and "access_token" in result:
                token = str(result["access_token"])
                self._kept[account] = (token, _kept_until(result))
                return token
        raise self._refused(result)

    def _acquire(self, account_hint: str | None, fresh: bool) -> dict[str, Any] | None:
        app = self.app()
        if self.options.auth == "app":
            if fresh:
                cache = app.token_cache
                for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
                    cache.remove_at(item)
            result: dict[str, Any] | None = app.acquire_token_for_client(scopes=self.scopes)
            return result
        accounts = app.get_accounts()
        if not accounts:
            raise AuthError(
                "no Microsoft sign-in is stored for this mailbox: run `recruitmail login microsoft`"
            )
        wanted = (account_hint or "").lower()
        account = next(
            (a for a in accounts if a.get("username", "").lower() == wanted), accounts[0]
        )
        result = app.acquire_token_silent(self.scopes, account=account, force_refresh=fresh)
        if result is None:
            raise AuthError(
                "the stored Microsoft sign-in has expired or lacks consent: "
                "run `recruitmail login microsoft` again"
            )
        return result

    def _refused(self, result: dict[str, Any] | None) -> AuthError | TransientError:
        result = result or {}
        error = str(result.get("error", "unknown_error"))
        description = str(result.get("error_description", "")).splitlines()[0:1]
        detail = description[0] if description else ""
        if error == "temporarily_unavailable":
            return TransientError(f"the sign-in service {self.authority} is unavailable: {detail}")
        hint = {
            "invalid_client": "the client secret or certificate is wrong or expired",
            "unauthorized_client": "the app registration does not allow this sign-in",
            "invalid_scope": "the requested permissions are not configured for the app",
            "invalid_grant": "the stored sign-in is no longer valid: run `recruitmail login microsoft`",
            "invalid_request": "the tenant or client id is wrong",
        }.get(error, "check tenant, client_id and the credential")
        return AuthError(f"sign-in at {self.authority} refused ({error}): {hint}. {detail}".strip())

    def device_login(self, print_fn: Callable[[str], None]) -> str:
        """Run the device-code flow; return the signed-in account's name."""
        with self._lock:
            app = self.app()
            try:
                flow = app.initiate_device_flow(scopes=self.scopes)
                if "user_code" not in flow:
                    raise self._refused(flow)
                print_fn(str(flow["message"]))
                result = app.acquire_token_by_device_flow(flow)
            except httpx.HTTPError as exc:
                raise TransientError(
                    f"cannot reach the sign-in service {self.authority}: {exc}"
                ) from None
            if not result or "access_token" not in result:
                raise self._refused(result)
            self._save()
        claims = result.get("id_token_claims") or {}
        return str(claims.get("preferred_username", ""))


class GraphClient:
    """Authenticated, throttling-aware Graph requests for every mailbox of one app registration.

    ``sleep`` and ``jitter`` are attributes so that a caller (a test, a benchmark) can observe or
    replace how waiting happens; the defaults are ``time.sleep`` and ``random.random``.
    """

    def __init__(
        self,
        options: GraphOptions,
        cache_path: Path | None = None,
        *,
        state_dir: Path | None = None,
        sleep: Sleeper = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.options = options
        self.base = f"{options.graph_endpoint}/v1.0"
        self.sleep = sleep
        self.jitter = jitter
        self._http = httpx.Client(
            verify=tls_context(options.ca_file),
            trust_env=True,
            timeout=options.timeout_seconds,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=512, max_keepalive_connections=512),
        )
        self.tokens = shared_tokens(options, cache_path, state_dir)
        self.waits = mailbox_waits(state_dir)
        # The waits are per app and mailbox (Outlook's limits are): one key space per app.
        self._wait_prefix = f"{options.graph_endpoint}|{options.tenant}|{options.client_id}|"
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._slots_lock = threading.Lock()
        self.users = 0
        self.closed = False

    def close(self) -> None:
        """Close the connection pool."""
        self.closed = True
        self._http.close()

    def _slot_of(self, mailbox: str) -> threading.BoundedSemaphore:
        with self._slots_lock:
            slot = self._slots.get(mailbox)
            if slot is None:
                slot = self._slots[mailbox] = threading.BoundedSemaphore(self.options.max_in_flight)
            return slot

    @contextmanager
    def _slot(self, mailbox: str) -> Iterator[None]:
        with self._slot_of(mailbox):
            yield

    def url(self, path_or_link: str) -> str:
        """An absolute Graph URL; links from responses must point back at the same Graph."""
        if path_or_link.startswith(("https://", "http://")):
            if not path_or_link.startswith(self.base + "/"):
                raise PermanentError("Graph returned a link to another host; not following it")
            return path_or_link
        return self.base + path_or_link

    def _backoff(self, attempt: int) -> float:
        delay: float = min(_BACKOFF_CAP, _BACKOFF_BASE * 2 ** (attempt - 1)) * (0.5 + self.jitter())
        return delay

    def _honour_wait(self, mailbox: str, what: str) -> None:
        """Block until Graph's last ``Retry-After`` for ``mailbox`` has elapsed, or hand a long
        wait to the scheduler without sending anything."""
        while True:
            remaining = self.waits.remaining(self._wait_prefix + mailbox)
            if remaining <= 0:
                return
            if remaining > MAX_INLINE_WAIT:
                raise TransientError(
                    f"{what}: Graph asked to wait; {remaining:.0f} s left before mailbox "
                    f"{mailbox} may be asked again",
                    retry_after=remaining,
                )
            log.info("graph: waiting %.1f s before asking mailbox %s again", remaining, mailbox)
            self.sleep(remaining)

    def _note_wait(self, response: httpx.Response, mailbox: str, what: str) -> float | None:
        """Read ``Retry-After`` (capped at an hour) and make it the mailbox's wait."""
        asked = retry_after_seconds(response.headers.get("Retry-After"))
        if asked is None:
            return None
        wait = capped_retry_after(asked)
        if wait < asked:
            log.warning(
                "graph %s for %s: Retry-After of %.0f s capped at %.0f s",
                what,
                mailbox,
                asked,
                MAX_RETRY_AFTER,
            )
        self.waits.wait(self._wait_prefix + mailbox, wait)
        return wait

    def request(
        self,
        method: str,
        path_or_link: str,
        *,
        mailbox: str,
        permission: str,
        params: Mapping[str, str] | None = None,
        json_body: Any = None,
        prefer: Sequence[str] = (),
        expect: frozenset[int] = frozenset(),
        may_write: Callable[[], None] | None = None,
    ) -> httpx.Response:
        """Send one Graph request for ``mailbox`` and return a 2xx response (or one in ``expect``).

        ``permission`` names what a 403 means is missing. ``may_write`` (for a request that
        writes to the mailbox) is asked right before each attempt leaves, after every wait,
        token refresh and backoff: when it raises (``FencedOut``), nothing more is sent. Throttling and server errors of
        idempotent requests are retried up to ``max_attempts``; a POST that may have been carried
        out raises ``AmbiguousError``. Errors follow the project's contract: ``TransientError``
        (429, 5xx, timeouts; ``retry_after`` when Graph gave one), ``AuthError`` (403: the
        permission to grant), ``PermanentError`` (the request refused: the call and Graph's code).
        """
        url = self.url(path_or_link)
        idempotent = method != "POST"
        what = f"{method} {url.split('?')[0].removeprefix(self.base)}"
        if params:  # the query's shape, never its values (they may hold an address)
            what += f" ({', '.join(sorted(params))})"
        fresh = False
        attempt = 0
        while True:
            attempt += 1
            self._honour_wait(mailbox, what)
            token = self.tokens.token(mailbox, fresh=fresh)
            headers = [("Authorization", f"Bearer {token}"), ("Prefer", 'IdType="ImmutableId"')]
            headers += [("Prefer", value) for value in prefer]
            if json_body is not None:
                headers.append(("Content-Type", "application/json"))
            content = None if json_body is None else json.dumps(json_body).encode("utf-8")
            try:
                with self._slot(mailbox):
                    if may_write is not None:
                        may_write()  # after any wait: this instance may still write
                    log.debug("graph %s (attempt %d)", what, attempt)
                    response = self._http.request(
                        method, url, params=params, headers=headers, content=content
                    )
            except httpx.HTTPError as exc:
                if "CERTIFICATE_VERIFY_FAILED" in str(exc):
                    raise ConfigError(
                        f"the TLS certificate of {self.options.graph_endpoint} is not trusted: "
                        "set ca_file (or SSL_CERT_FILE) to the CA bundle of your TLS inspection"
                    ) from None
                sent = not isinstance(exc, _NOT_SENT)
                if sent and not idempotent:
                    raise AmbiguousError(
                        f"{what}: no answer after the request was sent ({type(exc).__name__})"
                    ) from None
                if attempt >= self.options.max_attempts:
                    raise TransientError(f"{what}: {type(exc).__name__}") from None
                self.sleep(self._backoff(attempt))
                continue
            status = response.status_code
            # Retry-After first, whatever else the answer says: the wait holds for the mailbox.
            wait = self._note_wait(response, mailbox, what) if status >= 300 else None
            if status < 300 or status in expect:
                return response
            code, message = error_of(response)
            if status == 401:
                if fresh:
                    raise AuthError(self._unauthorised(mailbox, code))
                fresh = True
                attempt -= 1  # a token refresh is not a retry of the request
                continue
            if status == 403:
                raise AuthError(self._forbidden(mailbox, permission, what, code, message))
            if status in THROTTLE_STATUSES or status >= 500:
                if not idempotent and status != 429:
                    # Failing before or after Exchange acted: nobody can say which. (A 429 is
                    # documented as failed: "Returns 429 Too Many Requests and the requests fail".)
                    raise AmbiguousError(
                        f"{what}: Graph answered {status} {code}; outcome unknown", retry_after=wait
                    )
                if attempt >= self.options.max_attempts or (wait or 0) > MAX_INLINE_WAIT:
                    raise TransientError(
                        f"{what}: Graph answered {status} {code} {attempt} time(s)",
                        retry_after=wait,
                    )
                if wait is None:
                    delay = self._backoff(attempt)
                    log.info(
                        "graph %s for %s answered %d; retrying in %.1f s",
                        what,
                        mailbox,
                        status,
                        delay,
                    )
                    self.sleep(delay)
                continue  # a Retry-After is waited out by _honour_wait before the next attempt
            raise PermanentError(
                f"{what}: Graph refused it ({status} {code}: {_scrub(message)})".replace(": )", ")")
            )

    def relative(self, path_or_link: str) -> str:
        """A Graph URL relative to the version, as a request inside ``$batch`` must be written."""
        return self.url(path_or_link).removeprefix(self.base)

    def batch(self, requests: Sequence[BatchGet]) -> dict[str, httpx.Response]:
        """Send up to 20 GETs in one ``POST /$batch``; return each answer by its ``key``.

        Only what can be asked right now is sent: a mailbox still under a ``Retry-After``, or with
        all of its ``max_in_flight`` slots taken, is left out. Each request holds one slot of its
        mailbox while the batch is out (each counts against that mailbox's limits on its own);
        an inner ``Retry-After`` becomes that mailbox's wait, and only that mailbox's. Nothing is
        retried here: a request left out, refused or throttled, and every request of a batch that
        failed as a whole, is simply missing from the answer, and its caller asks directly as it
        would have without the batch. Only app-only sign-in batches (one token for all mailboxes).
        """
        if self.options.auth != "app" or not requests:
            return {}
        if len(requests) > BATCH_LIMIT:
            raise ValueError(f"a Graph batch holds at most {BATCH_LIMIT} requests")
        taken: list[threading.BoundedSemaphore] = []
        sent: list[BatchGet] = []
        try:
            for item in requests:
                if self.waits.remaining(self._wait_prefix + item.mailbox) > 0:
                    continue
                slot = self._slot_of(item.mailbox)
                if slot.acquire(blocking=False):
                    taken.append(slot)
                    sent.append(item)
            if not sent:
                return {}
            return self._send_batch(sent)
        finally:
            for slot in taken:
                slot.release()

    def _send_batch(self, sent: list[BatchGet]) -> dict[str, httpx.Response]:
        body = {
            "requests": [
                {
                    "id": str(index),
                    "method": "GET",
                    "url": self.relative(item.link),
                    "headers": {"Prefer": ", ".join(('IdType="ImmutableId"', *item.prefer))},
                }
                for index, item in enumerate(sent)
            ]
        }
        content = json.dumps(body).encode("utf-8")
        fresh = False
        while True:
            token = self.tokens.token(sent[0].mailbox, fresh=fresh)
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            try:
                response = self._http.post(f"{self.base}/$batch", headers=headers, content=content)
            except httpx.HTTPError as exc:
                log.info("graph $batch of %d: %s; asking directly", len(sent), type(exc).__name__)
                return {}
            if response.status_code == 401 and not fresh:
                fresh = True
                continue
            break
        if response.status_code != 200:
            code, _ = error_of(response)
            log.info(
                "graph $batch of %d: %d %s; asking directly", len(sent), response.status_code, code
            )
            return {}
        try:
            answers = response.json().get("responses") or []
        except (ValueError, AttributeError):
            log.info("graph $batch of %d: unreadable answer; asking directly", len(sent))
            return {}
        out: dict[str, httpx.Response] = {}
        for answer in answers:
            try:
                item = sent[int(answer["id"])]
                status = int(answer["status"])
                inner_headers = {str(k): str(v) for k, v in (answer.get("headers") or {}).items()}
                inner = httpx.Response(
                    status,
                    headers=inner_headers,
                    json=answer.get("body"),
                    request=httpx.Request("GET", self.url(item.link)),
                )
            except (KeyError, IndexError, TypeError, ValueError):
                continue
            if status >= 300:
                self._note_wait(inner, item.mailbox, "GET in $batch")
            out[item.key] = inner
        return out

    def _unauthorised(self, mailbox: str, code: str) -> str:
        if self.options.auth == "delegated":
            return (
                f"Microsoft 365 rejected the sign-in for {mailbox} even after a refresh (401 {code}): "
                "run `recruitmail login microsoft` again"
            )
        return (
            f"Microsoft 365 rejected the app's token for {mailbox} even after a fresh one (401 {code}): "
            "check tenant, client_id and that the app registration still exists"
        )

    def _forbidden(self, mailbox: str, permission: str, what: str, code: str, message: str) -> str:
        lowered = message.lower()
        if "accesspolicy" in lowered.replace(" ", "") or "rbac" in lowered or "policy" in lowered:
            return (
                f"Microsoft 365 keeps the app out of mailbox {mailbox} (403 {code}): it is outside the "
                "app's Exchange RBAC for Applications management scope or Application Access Policy; "
                "add the mailbox to that scope"
            )
        if self.options.auth == "app":
            grant = f"the application permission {permission} (with admin consent)"
        else:
            grant = f"the delegated permission {permission}, then run `recruitmail login microsoft`"
        return f"Microsoft 365 refused {what} for mailbox {mailbox} (403 {code}): grant the app {grant}"


_SHARED: dict[tuple[Any, ...], GraphClient] = {}
_SHARED_LOCK = threading.Lock()
_TOKENS: dict[tuple[Any, ...], _Tokens] = {}
_TOKENS_LOCK = threading.Lock()


def _app_identity(options: GraphOptions) -> tuple[Any, ...]:
    return (
        options.authority_host,
        options.tenant,
        options.client_id,
        options.auth,
        options.client_secret,
        str(options.key_file),
        options.thumbprint,
        options.graph_endpoint,  # the scopes
        str(options.ca_file),
    )


def shared_tokens(
    options: GraphOptions, cache_path: Path | None, state_dir: Path | None = None
) -> _Tokens:
    """The one msal application and token cache of this process for an app registration (and,
    delegated, for one token cache file): a mailbox's source and sink, and every mailbox of the
    app, sign in once."""
    app_cache = app_cache_path(options, state_dir) if options.auth == "app" else None
    key = (*_app_identity(options), str(cache_path), str(app_cache))
    with _TOKENS_LOCK:
        tokens = _TOKENS.get(key)
        if tokens is None:
            tokens = _TOKENS[key] = _Tokens(options, cache_path, app_cache)
        return tokens


def shared_client(options: GraphOptions, state_dir: Path | None) -> GraphClient:
    """The client for this app registration, created on first use; call ``release`` when done."""
    cache = token_cache_path(options, state_dir) if options.auth == "delegated" else None
    key = (
        *_app_identity(options),
        str(cache),
        str(state_dir),
        options.max_in_flight,
        options.max_attempts,
        options.timeout_seconds,
    )
    with _SHARED_LOCK:
        client = _SHARED.get(key)
        if client is None or client.closed:
            client = _SHARED[key] = GraphClient(options, cache, state_dir=state_dir)
        client.users += 1
        return client


def release(client: GraphClient) -> None:
    """One user of a shared client is done; the last one closes it."""
    with _SHARED_LOCK:
        client.users -= 1
        if client.users > 0:
            return
        for key, value in list(_SHARED.items()):
            if value is client:
                del _SHARED[key]
    client.close()
