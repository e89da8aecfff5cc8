"""Sign-in (msal) and HTTP (httpx) to Microsoft Graph, shared by all mailboxes of one app registration.

One ``GraphClient`` serves every mailbox that uses the same app, tenant and endpoints, so they share
one token and one connection pool. Each request takes one of its mailbox's ``max_in_flight`` slots
(Outlook allows 4 concurrent requests per mailbox); throttling answers are waited out exactly as the
server asks, other failures back off exponentially with jitter; a request that may have reached the
server without an answer is never repeated blindly when it is not idempotent.
"""

from __future__ import annotations

import email.utils
import json
import logging
import os
import random
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msal

from connectors.microsoft.options import GraphOptions
from daemon.errors import AmbiguousError, AuthError, ConfigError, PermanentError, TransientError
from daemon.secrets import load_secret

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
# The server has not acted on a request it answered with one of these: safe to send it again.
_NOT_ACTED = frozenset({429, 503})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_BACKOFF_BASE = 1.0
_BACKOFF_CAP = 60.0
# A longer Retry-After than this is handed to the scheduler rather than slept through here.
MAX_INLINE_WAIT = 300.0

Sleeper = Callable[[float], None]


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """The trust store: ``ca_file``, else the usual environment variables, else the system's."""
    if ca_file is not None:
        try:
            return ssl.create_default_context(cafile=str(ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"ca_file {ca_file}: cannot load it as a CA bundle ({exc})") from None
    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        bundle = os.environ.get(variable)
        if bundle and Path(bundle).is_file():
            return ssl.create_default_context(cafile=bundle)
    directory = os.environ.get("SSL_CERT_DIR")
    if directory and Path(directory).is_dir():
        return ssl.create_default_context(capath=directory)
    return ssl.create_default_context()


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
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(self.cache.serialize())
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.path)
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


class _Tokens:
    """msal behind a lock: one token for every mailbox that shares the app."""

    def __init__(self, options: GraphOptions, http: httpx.Client, cache_path: Path | None) -> None:
        self.options = options
        self.authority = f"{options.authority_host}/{options.tenant}"
        self._http = _MsalHttp(http)
        self._lock = threading.Lock()
        self._app: Any = None
        self._cache: Any = None
        self._save: Callable[[], None] = lambda: None
        self._cache_path = cache_path

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
                self._app = msal.ConfidentialClientApplication(
                    options.client_id,
                    client_credential=self._credential(),
                    authority=self.authority,
                    http_client=self._http,
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
        """A bearer token; ``fresh`` drops the cached one first (after a 401)."""
        with self._lock:
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
            return str(result["access_token"])
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
        self.tokens = _Tokens(options, self._http, cache_path)
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._slots_lock = threading.Lock()
        self.users = 0
        self.closed = False

    def close(self) -> None:
        """Close the connection pool."""
        self.closed = True
        self._http.close()

    @contextmanager
    def _slot(self, mailbox: str) -> Iterator[None]:
        with self._slots_lock:
            slot = self._slots.get(mailbox)
            if slot is None:
                slot = self._slots[mailbox] = threading.BoundedSemaphore(self.options.max_in_flight)
        with slot:
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
    ) -> httpx.Response:
        """Send one Graph request for ``mailbox`` and return a 2xx response (or one in ``expect``).

        ``permission`` names what a 403 means is missing. Throttling and server errors are retried
        up to ``max_attempts``; a POST that may have been carried out raises ``AmbiguousError``.
        """
        url = self.url(path_or_link)
        idempotent = method != "POST"
        what = f"{method} {url.split('?')[0].removeprefix(self.base)}"
        fresh = False
        attempt = 0
        while True:
            attempt += 1
            token = self.tokens.token(mailbox, fresh=fresh)
            headers = [("Authorization", f"Bearer {token}"), ("Prefer", 'IdType="ImmutableId"')]
            headers += [("Prefer", value) for value in prefer]
            if json_body is not None:
                headers.append(("Content-Type", "application/json"))
            content = None if json_body is None else json.dumps(json_body).encode("utf-8")
            try:
                with self._slot(mailbox):
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
                        f"{what}: no answer after the request was sent ({exc})"
                    ) from None
                if attempt >= self.options.max_attempts:
                    raise TransientError(f"{what}: {type(exc).__name__}: {exc}") from None
                self.sleep(self._backoff(attempt))
                continue
            status = response.status_code
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
            if status in THROTTLE_STATUSES or (status >= 500 and idempotent):
                if not idempotent and status not in _NOT_ACTED:
                    raise AmbiguousError(f"{what}: Graph answered {status} {code}; outcome unknown")
                wait = retry_after_seconds(response.headers.get("Retry-After"))
                if attempt >= self.options.max_attempts or (wait or 0) > MAX_INLINE_WAIT:
                    raise TransientError(
                        f"{what}: Graph answered {status} {code} {attempt} time(s)",
                        retry_after=wait,
                    )
                delay = wait if wait is not None else self._backoff(attempt)
                log.info(
                    "graph throttled %s for %s (%d); waiting %.1f s", what, mailbox, status, delay
                )
                self.sleep(delay)
                continue
            if status >= 500:
                raise TransientError(f"{what}: Graph answered {status} {code}")
            raise PermanentError(f"{what}: Graph refused it ({status} {code}: {message[:200]})")

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


def shared_client(options: GraphOptions, state_dir: Path | None) -> GraphClient:
    """The client for this app registration, created on first use; call ``release`` when done."""
    cache = token_cache_path(options, state_dir) if options.auth == "delegated" else None
    key = (
        options.authority_host,
        options.tenant,
        options.client_id,
        options.auth,
        options.client_secret,
        str(options.key_file),
        options.thumbprint,
        options.graph_endpoint,
        str(options.ca_file),
        str(cache),
        options.max_in_flight,
        options.max_attempts,
        options.timeout_seconds,
    )
    with _SHARED_LOCK:
        client = _SHARED.get(key)
        if client is None or client.closed:
            client = _SHARED[key] = GraphClient(options, cache)
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
