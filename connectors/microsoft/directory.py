"""Microsoft Entra ID groups as fleets: the users of a group, nested groups included, from Graph.

One listing per refresh, paged (``@odata.nextLink``), 999 users a page:
``GET /groups/{id}/transitiveMembers/microsoft.graph.user`` with ``$select`` of the fields a
mailbox needs. The cast to ``microsoft.graph.user`` is an advanced query: Graph wants the
``ConsistencyLevel: eventual`` header and ``$count=true`` with it ("List group transitive
members"), on every page, and answers from an index that may lag a change by a little.
``$filter`` on this relationship is refused in practice ("The specified filter to the reference
property query is currently not supported"), so disabled accounts and users without a mailbox
are left out here rather than by Graph. A group named by its mail address is looked up once
(``GET /groups?$filter=mail eq '…'``) and its id kept for the life of the object.

Permissions (application): ``GroupMember.Read.All`` to list the members, ``User.Read.All`` for
their properties (without it Graph returns members with their id and type only, and every
member would be left out for want of a mail address). The time zone is not read here: each
mailbox reads its own from ``mailboxSettings`` as before (one request per mailbox per
``settings_ttl_seconds``), so a refresh costs one request per 999 members.
"""

from __future__ import annotations

import logging
import re
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import Field

from recruitmail.connectors.microsoft.client import GraphClient, json_of, token_cache_path
from recruitmail.connectors.microsoft.options import GraphOptions
from recruitmail.contracts.connector import ConnectorContext, DirectoryMember
from recruitmail.contracts.errors import AuthError, PermanentError
from recruitmail.contracts.models import normalise_address

log = logging.getLogger(__name__)

SELECT = "id,displayName,mail,userPrincipalName,jobTitle,preferredLanguage,accountEnabled"
GROUP_ID = re.compile(r"^[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
DIRECTORY_KEY = "directory"
"""The key the directory's requests are counted under (throttling waits, concurrency slots)."""
MAX_PAGES = 1000
"""A listing longer than this many pages is cut short (a link loop must not run forever)."""


class DirectoryOptions(GraphOptions):
    """Options of the Microsoft Entra ID directory (the app registration that reads groups)."""

    page_size: int = Field(
        999, ge=1, le=999, description="Users per page ($top; Graph allows 999)."
    )


def _consistency_eventual(request: httpx.Request) -> None:
    # Every request of this client is a directory query that needs the advanced-query index.
    request.headers["ConsistencyLevel"] = "eventual"


class GraphDirectory:
    """The members of Entra ID groups, read with the app's own sign-in."""

    def __init__(self, options: DirectoryOptions, context: ConnectorContext) -> None:
        self.options = options
        cache = (
            token_cache_path(options, context.state_dir) if options.auth == "delegated" else None
        )
        # A client of its own: its requests carry ConsistencyLevel, which no mailbox call wants.
        self.client = GraphClient(options, cache, state_dir=context.state_dir)
        self.client._http.event_hooks["request"].append(_consistency_eventual)
        self._ids: dict[str, str] = {}
        self._closed = False

    def _get(self, link: str, params: dict[str, str] | None, permission: str) -> dict[str, Any]:
        response = self.client.request(
            "GET",
            link,
            mailbox=DIRECTORY_KEY,
            permission=permission,
            params=params,
            expect=frozenset({404}),
        )
        if response.status_code == 404:
            raise PermanentError(
                "Microsoft Entra ID has no such group (404): check mailboxes_from.group "
                "(the group's object id or its mail address)"
            )
        return json_of(response, "a directory listing")

    def group_id(self, group: str) -> str:
        """The object id of ``group`` (given as an id or as the group's mail address)."""
        group = group.strip()
        if GROUP_ID.match(group):
            return group.lower()
        if group not in self._ids:
            literal = normalise_address(group).replace("'", "''")
            found = self._get(
                "/groups",
                {"$filter": f"mail eq '{literal}'", "$select": "id", "$count": "true"},
                "GroupMember.Read.All",
            ).get("value")
            if not isinstance(found, list) or not found or not isinstance(found[0], dict):
                raise PermanentError(
                    f"Microsoft Entra ID has no group with the mail address {group}: "
                    "check mailboxes_from.group"
                )
            self._ids[group] = str(found[0].get("id") or "")
        return self._ids[group]

    def members(self, group: str) -> list[DirectoryMember]:
        """Every enabled user with a mail address in ``group``, nested groups included."""
        link = (
            f"/groups/{quote(self.group_id(group), safe='')}/transitiveMembers/microsoft.graph.user"
        )
        params: dict[str, str] | None = {
            "$select": SELECT,
            "$count": "true",
            "$top": str(self.options.page_size),
        }
        found: dict[str, DirectoryMember] = {}
        left_out = 0
        for _ in range(MAX_PAGES):
            page = self._get(link, params, "GroupMember.Read.All and User.Read.All")
            for item in page.get("value") or []:
                if isinstance(item, dict) and "userPrincipalName" not in item:
                    # Graph's "limited information": the app may list the group, not read users.
                    raise AuthError(
                        f"Microsoft Entra ID lists the members of group {group} without their "
                        "properties: grant the app the application permission User.Read.All "
                        "(with admin consent)"
                    )
                member = _member(item)
                if member is None:
                    left_out += 1
                else:
                    found.setdefault(member.address, member)
            following = page.get("@odata.nextLink")
            if not following:
                break
            link, params = str(following), None  # the link carries the query
        else:
            raise PermanentError(f"the member listing of group {group} did not end")
        if left_out:
            log.info(
                "directory group %s: %d member(s) left out (disabled, or no mail address)",
                group,
                left_out,
            )
        return list(found.values())

    def close(self) -> None:
        """Close the connection pool. Safe to call more than once."""
        if not self._closed:
            self._closed = True
            self.client.close()


def _member(item: Any) -> DirectoryMember | None:
    """A user of the listing as a member, or ``None`` for one that cannot have a mailbox here."""
    if not isinstance(item, dict) or item.get("accountEnabled") is False:
        return None
    mail = item.get("mail")
    if not isinstance(mail, str) or "@" not in mail:
        return None
    return DirectoryMember(
        address=normalise_address(mail),
        name=str(item.get("displayName") or "").strip(),
        title=str(item.get("jobTitle") or "").strip(),
        language=str(item.get("preferredLanguage") or "").strip(),
        id=str(item.get("id") or ""),
    )


def open_directory(options: DirectoryOptions, context: ConnectorContext) -> GraphDirectory:
    """The organisation's Entra ID as a ``GroupDirectory``."""
    return GraphDirectory(options, context)
