"""Google Workspace groups as fleets: the users of a group, nested groups included, from the
Admin SDK Directory API.

``members.list(groupKey, includeDerivedMembership=true)`` pages through the group (200 a page,
``nextPageToken``) and names every user once; ``users.get(userKey, viewType=…)`` then reads each
active one's name, job title (``organizations``, the primary one first) and language
(``languages``, the preferred one first), asking only for those ``fields``. The time zone is not
in the directory: each mailbox reads its calendar's own, as before.

Sign-in is the service account's domain-wide delegation, acting as ``subject``: a user who may
read groups and users (a super administrator, or better a custom admin role with the privileges
*Groups → Read* and *Users → Read*). The client ID needs only
``admin.directory.group.member.readonly`` and ``admin.directory.user.readonly``.
"""

from __future__ import annotations

import random
import time
from functools import partial
from typing import Any, Literal

from googleapiclient.http import HttpRequest
from pydantic import Field, model_validator

from recruitmail.connectors.google.auth import _grant
from recruitmail.connectors.google.client import CALLS, Sleeper, _build, _Caller, _close, _endpoint
from recruitmail.connectors.google.options import SCOPE_PREFIX, GoogleOptions
from recruitmail.contracts.connector import ConnectorContext, DirectoryMember
from recruitmail.contracts.errors import ConfigError
from recruitmail.contracts.models import normalise_address

GROUP_MEMBER_READONLY = SCOPE_PREFIX + "admin.directory.group.member.readonly"
USER_READONLY = SCOPE_PREFIX + "admin.directory.user.readonly"
DIRECTORY_SCOPES = [GROUP_MEMBER_READONLY, USER_READONLY]
DEFAULT_DIRECTORY_ENDPOINT = "https://admin.googleapis.com/"
USER_FIELDS = "id,primaryEmail,name/fullName,organizations,languages,suspended,archived"
MAX_PAGES = 1000
"""A listing longer than this many pages is cut short (a token loop must not run forever)."""

CALLS.setdefault(
    "members.list",
    (
        "admin.directory.group.member.readonly",
        "GET /admin/directory/v1/groups/{groupKey}/members",
    ),
)
CALLS.setdefault(
    "users.get", ("admin.directory.user.readonly", "GET /admin/directory/v1/users/{userKey}")
)


class DirectoryOptions(GoogleOptions):
    """Options of the Google Workspace directory (the service account that reads groups)."""

    directory_endpoint: str | None = Field(
        None, description="Root URL of the Admin SDK (private endpoints, tests)."
    )
    view_type: Literal["domain_public", "admin_view"] = Field(
        "domain_public",
        description="users.get view: domain_public (what every colleague sees) or admin_view.",
    )

    @model_validator(mode="after")
    def _admin_subject(self) -> DirectoryOptions:
        if self.auth == "service_account" and not self.subject:
            raise ValueError(
                "the directory is read as a user who may read groups and users: set subject "
                "to that administrator's address"
            )
        return self


class GoogleDirectory:
    """The members of Google Workspace groups."""

    def __init__(
        self,
        options: DirectoryOptions,
        context: ConnectorContext,
        *,
        sleep: Sleeper = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if options.auth != "service_account":
            raise ConfigError(
                "mailboxes_from with type google reads the directory with a service account "
                '(auth = "service_account" and subject = an administrator)'
            )
        self.options = options
        grant = _grant(options, context, DIRECTORY_SCOPES)
        self._caller = _Caller(options, grant, sleep, rng or random.Random())
        endpoint = _endpoint(options.directory_endpoint, DEFAULT_DIRECTORY_ENDPOINT)
        self._service = _build("admin", "directory_v1", endpoint, grant, options)
        self._closed = False

    def members(self, group: str) -> list[DirectoryMember]:
        """Every active user with a mailbox in ``group``, nested groups included."""
        keys: list[str] = []
        seen: set[str] = set()
        token: str | None = None
        for _ in range(MAX_PAGES):
            page = self._caller.call(partial(self._page, group.strip(), token), "members.list")
            for item in page.get("members") or []:
                if not isinstance(item, dict) or item.get("type") != "USER":
                    continue
                if str(item.get("status") or "ACTIVE") != "ACTIVE":
                    continue
                key = str(item.get("id") or item.get("email") or "")
                if key and key not in seen:
                    seen.add(key)
                    keys.append(key)
            token = page.get("nextPageToken")
            if not token:
                break
        found: dict[str, DirectoryMember] = {}
        for key in keys:
            member = self._user(key)
            if member is not None:
                found.setdefault(member.address, member)
        return list(found.values())

    def _page(self, group: str, token: str | None) -> HttpRequest:
        request: HttpRequest = self._service.members().list(
            groupKey=group, includeDerivedMembership=True, maxResults=200, pageToken=token
        )
        return request

    def _user(self, key: str) -> DirectoryMember | None:
        user = self._caller.call(
            lambda: self._service.users().get(
                userKey=key, viewType=self.options.view_type, fields=USER_FIELDS
            ),
            "users.get",
        )
        mail = user.get("primaryEmail")
        if user.get("suspended") or user.get("archived") or not isinstance(mail, str):
            return None
        name = user.get("name")
        name = name if isinstance(name, dict) else {}
        return DirectoryMember(
            address=normalise_address(mail),
            name=str(name.get("fullName") or "").strip(),
            title=_title(user.get("organizations")),
            language=_language(user.get("languages")),
            id=str(user.get("id") or ""),
        )

    def close(self) -> None:
        """Close the HTTP connections. Safe to call more than once."""
        if not self._closed:
            self._closed = True
            _close(self._service)


def _title(organizations: Any) -> str:
    if not isinstance(organizations, list):
        return ""
    ranked = sorted(
        (o for o in organizations if isinstance(o, dict) and o.get("title")),
        key=lambda o: not o.get("primary"),
    )
    return str(ranked[0]["title"]).strip() if ranked else ""


def _language(languages: Any) -> str:
    if not isinstance(languages, list):
        return ""
    ranked = sorted(
        (item for item in languages if isinstance(item, dict) and item.get("languageCode")),
        key=lambda item: item.get("preference") != "preferred",
    )
    return str(ranked[0]["languageCode"]).strip() if ranked else ""


def open_directory(options: DirectoryOptions, context: ConnectorContext) -> GoogleDirectory:
    """The Workspace directory as a ``GroupDirectory``."""
    return GoogleDirectory(options, context)
