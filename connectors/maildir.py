"""Draft sink writing into a local Maildir++ folder that mutt, Thunderbird or Dovecot can open."""

from __future__ import annotations

import bisect
import contextlib
import email.policy
import email.utils
import errno
import hashlib
import logging
import os
import re
import secrets
import socket
import stat
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from html.parser import HTMLParser
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator

from recruitmail.contracts.connector import KEY_HEADER, ConnectorContext, own_words
from recruitmail.contracts.errors import ConfigError, PermanentError, TransientError
from recruitmail.contracts.limits import MAX_BODY_CHARS
from recruitmail.contracts.mime import address_key, to_bytes
from recruitmail.contracts.models import DraftKey, DraftMessage, DraftRef, DraftState

log = logging.getLogger(__name__)

STALE_TMP_SECONDS = 36 * 3600
"""A file this long in a folder's tmp/ was abandoned by whoever wrote it (maildir(5)'s rule)."""
OBSOLETE_KEYWORD = "recruitmail-obsolete"
# Prepended to a draft that is no longer wanted: mutt/neomutt show X-Keywords and Keywords as
# labels, Dovecot and Thunderbird's Maildir import read them; the F flag is shown everywhere.
_OBSOLETE_LINES = (f"X-Keywords: {OBSOLETE_KEYWORD}", f"Keywords: {OBSOLETE_KEYWORD}")
_NAME_KEY = re.compile(r"rm-([0-9a-f]{32})")
_MESSAGE_ID_KEY = re.compile(r"<rm-([0-9a-f]{32})@")
_MAX_HEADER_BYTES = 256 * 1024
# What fsync of a directory answers on file systems that do not support it.
_NO_DIRECTORY_FSYNC = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF})


class SinkOptions(BaseModel):
    """Where the drafts go: a Maildir++ root and its Drafts and Sent folders."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path = Field(description="The Maildir++ root (created when missing, mode 0700).")
    drafts_folder: str = Field(".Drafts", description="Folder under the root that holds drafts.")
    sent_folder: str = Field(".Sent", description="Folder under the root that holds sent mail.")

    @field_validator("drafts_folder", "sent_folder")
    @classmethod
    def _folder(cls, value: str) -> str:
        if not value or "/" in value or value in (".", "..") or value.startswith(".."):
            raise ValueError(
                f"{value!r} is not a folder name under the Maildir root (e.g. .Drafts)"
            )
        return value


def open_sink(options: SinkOptions, context: ConnectorContext) -> MaildirSink:
    """Build the Maildir sink for one mailbox, creating missing folders."""
    return MaildirSink(options, context)


@dataclass(frozen=True)
class _Entry:
    """One message file and the few headers the sink looks at."""

    path: Path
    base: str
    flags: str
    key_id: str
    message_id: str
    recipients: frozenset[str]
    date: datetime | None

    @property
    def trashed(self) -> bool:
        return "T" in self.flags


# A listing taken less than this after its folder last changed may have missed a change made in
# the same tick of the file system's clock (which need not advance between two changes): such a
# listing of a folder others write (Sent) is taken again until it is older than this, as git
# does with its "racily clean" index entries.
_RACY_NS = 2_000_000_000


class _Folder:
    """A Maildir folder whose message headers are read once per file version and remembered.

    The listing is an index kept in memory for the sink's life: it is taken again only when the
    modification time of ``cur`` or ``new`` changed (a file was added, renamed or removed there
    by anyone), and, for a folder only others write (``strict``: Sent), also while it is too
    recent to be sure it saw a change made in the same tick of the file system's clock. The
    sink's own creates are added to it directly (Drafts). A file it names that is gone (a
    client renamed or moved it) makes the caller ask for a fresh listing (``refresh``).
    """

    def __init__(self, path: Path, *, strict: bool = True) -> None:
        self.path = path
        self._strict = strict
        self._seen: dict[tuple[str, int, int], _Entry] = {}
        self._by_key: dict[str, list[_Entry]] = {}
        self._ordered: list[_Entry] = []
        self._stamp: tuple[tuple[int, int], ...] | None = None
        self._racy = False
        self._warned: set[tuple[str, str]] = set()

    def create(self, *, subfolder: bool | None) -> None:
        """Make the folder and its cur/new/tmp; ``subfolder`` None for the Maildir root."""
        for part in (self.path, self.path / "cur", self.path / "new", self.path / "tmp"):
            part.mkdir(mode=0o700, parents=True, exist_ok=True)
            if subfolder is not None:  # the root itself may be a link an administrator made
                _refuse_symlink(part, ConfigError)
        if subfolder:
            # Maildir++ marks subfolders so that Courier/Dovecot list them.
            marker = self.path / "maildirfolder"
            if not marker.is_symlink():
                marker.touch(mode=0o600, exist_ok=True)

    def _stamps(self) -> tuple[tuple[int, int], ...]:
        """(modification time, inode) of cur and new: any entry added, renamed or removed in
        either changes it."""
        stamps = []
        for sub in ("cur", "new"):
            try:
                info = os.stat(self.path / sub, follow_symlinks=False)
            except OSError:
                stamps.append((-1, -1))
            else:
                stamps.append((info.st_mtime_ns, info.st_ino))
        return tuple(stamps)

    def entries(self, *, fresh: bool = False) -> list[_Entry]:
        """The folder's messages, from the index unless it may be stale (or ``fresh``)."""
        stamp = self._stamps()
        if fresh or stamp != self._stamp or (self._strict and self._racy):
            self._list(stamp)
        return self._ordered

    def refresh(self) -> None:
        """Forget the index: the next call lists the folder again."""
        self._stamp = None

    def added(self, entries: list[_Entry]) -> None:
        """Index messages this sink has just written (so its own creates need no listing)."""
        stamp = self._stamps()
        if self._stamp is None:
            self._list(stamp)
            return
        self._stamp = stamp
        # A new list (a caller may hold the old one), each entry placed by name as the sort of
        # a fresh listing would place it: not the whole folder sorted again for each draft.
        ordered = self._ordered.copy()
        for entry in entries:
            bisect.insort(ordered, entry, key=_by_name)
            self._index(entry)
        self._ordered = ordered

    def _index(self, entry: _Entry) -> None:
        for key_id in {
            entry.key_id,
            _key_in_name(entry.base),
            _key_in_message_id(entry.message_id),
        }:
            if key_id:
                self._by_key.setdefault(key_id, []).append(entry)

    def _list(self, stamp: tuple[tuple[int, int], ...]) -> None:
        # The stamp is taken before listing: a change during the listing shows as a new stamp.
        started = time.time_ns()
        found: dict[tuple[str, int, int], _Entry] = {}
        _refuse_symlink(self.path, PermanentError)
        for sub in ("cur", "new"):
            try:
                _refuse_symlink(self.path / sub, PermanentError)
                listing = list(os.scandir(self.path / sub))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise TransientError(f"{self.path / sub}: cannot list ({exc.strerror})") from None
            for item in listing:
                if item.name.startswith("."):
                    continue
                if not item.is_file(follow_symlinks=False):
                    # A FIFO would hang the pass, a device or a link could read anything: only
                    # regular files are mail. Never opened; said once per name.
                    self._not_mail(sub, item)
                    continue
                # Files are replaced, never rewritten in place (clients rename; we write a new
                # file and rename it over), so name and inode identify a version without a stat
                # call per file.
                version = (f"{sub}/{item.name}", item.inode(), 0)
                entry = self._seen.get(version) or _read_entry(Path(item.path))
                if entry is not None:
                    found[version] = entry
        self._seen = found
        self._ordered = sorted(found.values(), key=_by_name)
        self._by_key = {}
        for known in self._ordered:
            self._index(known)
        self._stamp = stamp
        self._racy = started - max(mtime for mtime, _ in stamp) < _RACY_NS

    def _not_mail(self, sub: str, item: os.DirEntry[str]) -> None:
        if (sub, item.name) in self._warned:
            return
        self._warned.add((sub, item.name))
        try:
            mode = item.stat(follow_symlinks=False).st_mode
        except OSError:
            mode = 0
        log.warning(
            "maildir: skipping %s in %s: %s, not a mail file",
            item.name[:80],
            self.path / sub,
            _kind(mode),
        )

    def keyed(self, key_id: str) -> list[_Entry]:
        """The entries whose name, key header or Message-ID carries ``key_id``."""
        self.entries()
        return self._by_key.get(key_id, [])


@dataclass(frozen=True)
class _Held:
    """A draft written to tmp/ under ``name``, waiting for ``flush`` to be put in place."""

    name: str
    entry: _Entry
    ref: DraftRef


def _by_name(entry: _Entry) -> str:
    return entry.path.name


def _read_entry(path: Path) -> _Entry | None:
    base, _, info = path.name.partition(":")
    flags = info[2:] if info.startswith("2,") else ""
    data = _read(path, _MAX_HEADER_BYTES)
    if data is None:
        return None
    head = _header_block(data)
    try:
        headers = BytesHeaderParser(policy=email.policy.compat32).parsebytes(head)
        recipients = frozenset(
            address_key(address)
            for _, address in email.utils.getaddresses(
                [str(v) for v in (headers.get_all("To") or []) + (headers.get_all("Cc") or [])]
            )
            if "@" in address
        )
        date = _date(headers.get("Date"))
        key_id = str(headers.get(KEY_HEADER, "")).strip()
        message_id = str(headers.get("Message-ID", "")).strip()
    except Exception:  # mail from other clients may be malformed in any way; it is not ours
        log.debug("maildir: skipping unreadable headers in %s", path.name)
        return None
    return _Entry(path, base, flags, key_id, message_id, recipients, date)


def _header_block(data: bytes) -> bytes:
    for separator in (b"\r\n\r\n", b"\n\n"):
        end = data.find(separator)
        if end >= 0:
            return data[: end + len(separator)]
    return data


def _date(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        moment = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError, IndexError):
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _without_obsolete_mark(data: bytes) -> bytes:
    for line in _OBSOLETE_LINES:
        for ending in (b"\n", b"\r\n"):
            prefix = line.encode("ascii") + ending
            if data.startswith(prefix):
                data = data[len(prefix) :]
                break
    return data


def content_digest(data: bytes) -> str:
    """The fingerprint of a draft's content, ignoring the obsolete mark this sink may add."""
    return hashlib.sha256(_without_obsolete_mark(data)).hexdigest()


def _key_in_name(base: str) -> str:
    match = _NAME_KEY.search(base)
    return match.group(1) if match else ""


def _key_in_message_id(message_id: str) -> str:
    match = _MESSAGE_ID_KEY.match(message_id)
    return match.group(1) if match else ""


def _carries(entry: _Entry, key_id: str) -> bool:
    return bool(key_id) and (
        entry.key_id == key_id or entry.message_id.startswith(f"<rm-{key_id}@")
    )


MAX_SENT_BYTES = 4 * MAX_BODY_CHARS
"""How much of a sent mail is read for its text (the body budget, in UTF-8's widest bytes)."""
_QUOTED_HTML = re.compile(
    r"gmail_quote|divRplyFwdMsg|appendonsend|moz-cite-prefix|OutlookMessageHeader"
)


def message_text(data: bytes) -> str:
    """The plain text of a mail (RFC 5322 bytes, possibly cut short): its text/plain part, else
    its HTML part as text without the quoted thread. Never raises on a malformed mail."""
    try:
        mail = email.message_from_bytes(data, policy=email.policy.default)
        part = mail.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        content = part.get_content()
    except Exception:  # mail from other clients may be malformed in any way; it is not ours
        log.debug("maildir: unreadable body skipped")
        return ""
    if not isinstance(content, str):
        return ""
    content = content[:MAX_BODY_CHARS]
    return html_text(content) if part.get_content_type() == "text/html" else content


class _HtmlText(HTMLParser):
    """The visible text of an HTML mail up to its quoted thread (a blockquote, or the marker
    Gmail, Outlook or Thunderbird put before it)."""

    _BREAKS = frozenset({"br", "p", "div", "li", "tr", "h1", "h2", "h3"})
    _HIDDEN = frozenset({"style", "script", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.hidden = 0
        self.done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        marks = " ".join(value or "" for name, value in attrs if name in ("class", "id"))
        if tag == "blockquote" or (marks and _QUOTED_HTML.search(marks)):
            self.done = True
        elif tag in self._HIDDEN:
            self.hidden += 1
        elif tag in self._BREAKS:
            self.out.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN and self.hidden:
            self.hidden -= 1

    def handle_data(self, data: str) -> None:
        if not self.done and not self.hidden:
            self.out.append(data)


def html_text(content: str) -> str:
    """An HTML body as plain text, up to the quoted thread."""
    parser = _HtmlText()
    try:
        parser.feed(content[:MAX_BODY_CHARS])
        parser.close()
    except Exception:  # HTMLParser is lenient; anything it still refuses is not worth a pass
        return ""
    lines = ("".join(parser.out)).replace("\xa0", " ").splitlines()
    return "\n".join(" ".join(line.split()) for line in lines)


class MaildirSink:
    """Drafts as files in a Maildir++ Drafts folder; Sent is read to tell sent drafts apart."""

    def __init__(self, options: SinkOptions, context: ConnectorContext) -> None:
        root = options.path.expanduser()
        # Drafts is written here: its index is kept up to date by our own creates, and what
        # others do there (rename, move, delete a draft) changes its modification time or shows
        # as a file gone. Sent is written by others only: strict.
        self._drafts = _Folder(root / options.drafts_folder, strict=False)
        self._sent = _Folder(root / options.sent_folder)
        try:
            _Folder(root).create(subfolder=None)
            self._drafts.create(subfolder=options.drafts_folder.startswith("."))
            self._sent.create(subfolder=options.sent_folder.startswith("."))
        except OSError as exc:
            raise ConfigError(
                f"sink.path: cannot create the Maildir {root} ({exc.strerror})"
            ) from None
        try:
            self._zone: ZoneInfo | None = ZoneInfo(context.time_zone)
        except (ZoneInfoNotFoundError, ValueError):
            self._zone = None
        # Maildir unique names end in the host name, with "/" and ":" escaped as the spec says.
        self._unsynced: set[Path] = set()  # folders with renames not yet fsynced
        # Between ``hold`` and ``flush``: creates written to tmp/, not yet fsynced nor renamed.
        self._held: list[_Held] | None = None
        self._leftovers: dict[str, list[str]] | None = None  # tmp/ files of killed processes
        self._host = socket.gethostname().replace("/", r"\057").replace(":", r"\072") or "localhost"

    # --- MailboxSink ---------------------------------------------------------------------------

    def find_draft(self, key: DraftKey) -> DraftRef | None:
        """The draft carrying ``key`` in Drafts (by file name, then by header), else in Sent.

        Answered from the folders' indexes; when one names a file that is gone (a client
        renamed or moved it since), both folders are listed again and the question asked again.
        """
        ref, stale = self._find(key)
        if ref is None and stale:
            self._drafts.refresh()
            self._sent.refresh()
            ref, _ = self._find(key)
        return ref

    def _find(self, key: DraftKey) -> tuple[DraftRef | None, bool]:
        for held in self._held or ():
            if held.entry.key_id == key.id:
                return held.ref, False
        stale = False
        drafts = [e for e in self._drafts.keyed(key.id) if not e.trashed]
        by_name = [e for e in drafts if _key_in_name(e.base) == key.id]
        for entry in by_name + [e for e in drafts if _carries(e, key.id)]:
            ref = self._ref(entry)
            if ref is not None:
                return ref, False
            stale = True
        for entry in self._sent.keyed(key.id):
            if _carries(entry, key.id):
                ref = self._ref(entry)
                if ref is not None:
                    return ref, False
                stale = True
        return None, stale

    def create_draft(self, message: DraftMessage) -> DraftRef:
        """Write the draft into Drafts atomically (tmp/, then cur/ with the Draft flag).

        The file is fsynced before it is renamed into place; the rename is made durable by
        ``flush`` (one directory fsync for a batch of creates, see there), or by ``close``.
        After ``hold`` the file is only written to tmp/: ``flush`` fsyncs the batch's files
        together, then renames them into cur/.
        """
        data = self._render(message)
        now = time.time()
        base = f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}rm-{message.key.id}-{secrets.token_hex(3)}.{self._host}"
        target = self._drafts.path / "cur" / f"{base}:2,D"
        entry = _Entry(
            target,
            base,
            "D",
            message.key.id,
            message.message_id,
            frozenset(),  # recipients and date are read from Sent only
            None,
        )
        ref = DraftRef(remote_id=base, fingerprint=hashlib.sha256(data).hexdigest())
        if self._held is not None:
            self._drop_leftovers(message.key.id)
            self._held.append(_Held(self._write_held(data, base), entry, ref))
        else:
            self._write(data, base, target, durable=False)
            self._drafts.added([entry])
        log.debug("maildir: drafted %s (%s)", message.key.kind.value, base)
        return ref

    def hold(self) -> None:
        """Until the next ``flush``, write created drafts to tmp/ only: ``flush`` then fsyncs
        them together (the kernel writes them in one go instead of one journal commit each) and
        renames them into cur/. A draft held is found by ``find_draft`` in this process; a
        process killed before ``flush`` leaves it in tmp/, where no mail client and no look-up
        sees it (the next create of its key removes it)."""
        if self._held is None:
            self._held = []

    def _write_held(self, data: bytes, base: str) -> str:
        """``data`` written to a new file in tmp/ (not fsynced); its name there."""
        name = f"{base}.{secrets.token_hex(4)}"
        tmp = _open_folder(self._drafts.path / "tmp")
        try:
            _write_new(tmp, name, data, fsync=False)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=tmp)
            raise TransientError(
                f"cannot write the draft into {self._drafts.path} ({exc.strerror})"
            ) from None
        finally:
            os.close(tmp)
        return name

    def _drop_leftovers(self, key_id: str) -> None:
        """Remove from tmp/ the files a killed process left while drafting ``key_id`` (held,
        never renamed: no one saw them). Listed once per hold; tmp/ is empty but for those,
        and for files of drafts never asked for again: those go after ``STALE_TMP_SECONDS``,
        whoever wrote them (Maildir's rule for tmp/)."""
        if self._leftovers is None:
            self._leftovers = {}
            stale_before = time.time() - STALE_TMP_SECONDS
            with contextlib.suppress(OSError):
                for item in os.scandir(self._drafts.path / "tmp"):
                    with contextlib.suppress(OSError):
                        if (
                            item.is_file(follow_symlinks=False)
                            and item.stat(follow_symlinks=False).st_mtime < stale_before
                        ):
                            os.unlink(item.path)
                            log.debug(
                                "maildir: removed %s, left in tmp/ for %d h",
                                item.name,
                                STALE_TMP_SECONDS // 3600,
                            )
                            continue
                    found = _key_in_name(item.name)
                    if found and item.name.startswith(tuple("0123456789")):
                        self._leftovers.setdefault(found, []).append(item.name)
        for name in self._leftovers.pop(key_id, ()):
            with contextlib.suppress(OSError):
                os.unlink(self._drafts.path / "tmp" / name)

    def _put_held(self) -> None:
        """The held creates made whole on disk (each file fsynced), then renamed into cur/.
        A file that cannot be fsynced is never renamed: all of them are removed and the error
        raised (the executor then records none of them as drafted; the next pass looks up)."""
        held, self._held = self._held or [], None
        self._leftovers = None
        if not held:
            return
        tmp = _open_folder(self._drafts.path / "tmp")
        try:
            try:
                folder = _open_folder(self._drafts.path / "cur")
            except BaseException:
                self._remove_held(tmp, held)
                raise
            try:
                try:
                    for item in held:
                        descriptor = os.open(item.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=tmp)
                        try:
                            os.fsync(descriptor)
                        finally:
                            os.close(descriptor)
                except OSError as exc:
                    self._remove_held(tmp, held)
                    raise TransientError(
                        f"cannot make the drafts in {self._drafts.path} durable ({exc.strerror})"
                    ) from None
                placed: list[_Entry] = []
                try:
                    for item in held:
                        os.replace(
                            item.name, item.entry.path.name, src_dir_fd=tmp, dst_dir_fd=folder
                        )
                        placed.append(item.entry)
                except OSError as exc:
                    self._remove_held(tmp, held[len(placed) :])
                    raise TransientError(
                        f"cannot write the draft into {self._drafts.path} ({exc.strerror})"
                    ) from None
                finally:
                    if placed:
                        self._unsynced.add(self._drafts.path / "cur")
                        self._drafts.added(placed)
            finally:
                os.close(folder)
        finally:
            os.close(tmp)

    @staticmethod
    def _remove_held(tmp: int, held: list[_Held]) -> None:
        for item in held:
            with contextlib.suppress(OSError):
                os.unlink(item.name, dir_fd=tmp)

    def flush(self) -> None:
        """Make the creates since the last flush durable: one fsync of each folder they were
        renamed into.

        Why a crash before this fsync can neither duplicate nor lose a draft
        (docs/RELIABILITY.md, "A batch of drafts"): every draft file is fsynced before its
        rename, so a draft is either whole in ``cur/`` or absent (a power cut may undo the
        rename; a killed process cannot, the kernel has it). The executor commits a draft's
        ledger row as "drafted" only after this returns, and its "attempting" row before the
        draft was created. After a crash the row is therefore "attempting" (or missing, had
        the database lost its last commits too), never "drafted" for a draft the disk lost; the
        next pass looks the key up before creating anything, adopts the draft if the rename
        survived and creates it once if it did not. A draft the disk lost is never reported
        as created, and at most one file carries a key.
        """
        self._put_held()
        pending, self._unsynced = self._unsynced, set()
        for folder_path in sorted(pending):
            try:
                folder = _open_folder(folder_path)
            except TransientError:
                self._unsynced |= pending
                raise
            try:
                os.fsync(folder)
            except OSError as exc:
                if exc.errno in _NO_DIRECTORY_FSYNC:
                    continue  # the file system cannot fsync a directory; nothing more to do
                self._unsynced |= pending
                raise TransientError(
                    f"cannot make the drafts in {folder_path} durable ({exc.strerror})"
                ) from None
            finally:
                os.close(folder)

    def draft_state(self, ref: DraftRef) -> DraftState:
        """SENT when a copy is in Sent; PENDING or EDITED when still in Drafts; else DELETED."""
        key_id = _key_in_name(ref.remote_id)
        for sent in self._sent.entries():
            if sent.base == ref.remote_id or _carries(sent, key_id):
                return DraftState.SENT
        entry = self._draft_entry(ref)
        if entry is None:
            return DraftState.DELETED
        data = _read(entry.path)
        if data is None:
            return DraftState.DELETED
        if ref.fingerprint and content_digest(data) == ref.fingerprint:
            return DraftState.PENDING
        # Without a fingerprint nobody can tell: treat it as the recruiter's, never overwrite.
        return DraftState.EDITED

    def update_draft(self, ref: DraftRef, message: DraftMessage) -> DraftRef:
        """Rewrite a pending draft in place (same file name, same flags)."""
        key_id = _key_in_name(ref.remote_id)
        if key_id and key_id != message.key.id:
            raise PermanentError(f"draft {ref.remote_id} carries another key than the update")
        state = self.draft_state(ref)
        if state is not DraftState.PENDING:
            raise PermanentError(
                f"draft {ref.remote_id} is {state.value}; only a pending draft is updated"
            )
        entry = self._draft_entry(ref)
        if entry is None:
            raise PermanentError(f"draft {ref.remote_id} is gone")
        data = self._render(message)
        self._write(data, entry.base, entry.path)
        return DraftRef(remote_id=ref.remote_id, fingerprint=hashlib.sha256(data).hexdigest())

    def mark_obsolete(self, ref: DraftRef) -> None:
        """Add the obsolete keyword headers and the F flag; the draft stays where it is."""
        entry = self._draft_entry(ref)
        if entry is None:
            log.info("maildir: draft %s is no longer in Drafts; nothing to mark", ref.remote_id)
            return
        data = _read(entry.path)
        if data is None:
            return
        if _without_obsolete_mark(data) == data:
            ending = b"\r\n" if data.split(b"\n", 1)[0].endswith(b"\r") else b"\n"
            mark = b"".join(line.encode("ascii") + ending for line in _OBSOLETE_LINES)
            self._write(mark + data, entry.base, entry.path)
        if "F" not in entry.flags:
            flags = "".join(sorted(set(entry.flags) | {"F"}))
            target = self._drafts.path / "cur" / f"{entry.base}:2,{flags}"
            try:
                # A rename, as mail clients do for flag changes: never two copies at once.
                os.rename(entry.path, target)
            except FileNotFoundError:
                log.info("maildir: draft %s moved while being marked", ref.remote_id)
            except OSError as exc:
                raise TransientError(
                    f"cannot flag draft {ref.remote_id} ({exc.strerror})"
                ) from None

    def close(self) -> None:
        """Nothing is held open between calls; creates not yet flushed are made durable."""
        try:
            self.flush()
        except TransientError as exc:
            log.warning("maildir: %s", exc)

    # --- KnowsLastContact ----------------------------------------------------------------------

    def last_contact(self, address: str, since: datetime) -> datetime | None:
        """The newest Date of a mail in Sent addressed (To or Cc) to ``address`` after ``since``."""
        wanted = address_key(address)
        dates = [
            e.date
            for e in self._sent.entries()
            if wanted in e.recipients and e.date is not None and e.date > since
        ]
        return max(dates, default=None)

    def last_sent_text(self, address: str, since: datetime) -> str | None:
        """The opening of the newest mail in Sent to ``address`` (To or Cc) after ``since``,
        as ``own_words`` of its plain text (``KnowsCorrespondence``)."""
        wanted = address_key(address)
        newest: tuple[datetime, Path] | None = None
        for entry in self._sent.entries():
            if wanted not in entry.recipients or entry.date is None or entry.date <= since:
                continue
            if newest is None or entry.date > newest[0]:
                newest = (entry.date, entry.path)
        if newest is None:
            return None
        data = _read(newest[1], MAX_SENT_BYTES)
        return own_words(message_text(data)) if data is not None else None

    # --- internals -----------------------------------------------------------------------------

    def _render(self, message: DraftMessage) -> bytes:
        now = datetime.now(self._zone or UTC)
        # Maildir files use the local line ending, as mutt and Dovecot write them.
        return to_bytes(message, date=now).replace(b"\r\n", b"\n")

    def _ref(self, entry: _Entry) -> DraftRef | None:
        data = _read(entry.path)
        if data is None:
            return None
        return DraftRef(remote_id=entry.base, fingerprint=content_digest(data))

    def _draft_entry(self, ref: DraftRef) -> _Entry | None:
        """The draft in Drafts by its file's base name, else (a client rewrote it under a new
        name) by the key it carries."""
        drafts = [e for e in self._drafts.entries(fresh=True) if not e.trashed]
        for entry in drafts:
            if entry.base == ref.remote_id:
                return entry
        key_id = _key_in_name(ref.remote_id)
        return next((e for e in drafts if _carries(e, key_id)), None)

    def _write(self, data: bytes, base: str, target: Path, *, durable: bool = True) -> None:
        """Write ``data`` to tmp/ and rename it onto ``target``: readers see old or new, never
        half. Both folders are opened without following links (a symlinked Drafts, cur or tmp
        is refused), and the file is created relative to them. The file is fsynced before the
        rename; the rename is fsynced now when ``durable``, else by the next ``flush``."""
        name = f"{base}.{secrets.token_hex(4)}"
        tmp = _open_folder(self._drafts.path / "tmp")
        try:
            folder = _open_folder(target.parent)
        except BaseException:
            os.close(tmp)
            raise
        try:
            try:
                _write_new(tmp, name, data, fsync=True)
                os.replace(name, target.name, src_dir_fd=tmp, dst_dir_fd=folder)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.unlink(name, dir_fd=tmp)
                raise TransientError(
                    f"cannot write the draft into {self._drafts.path} ({exc.strerror})"
                ) from None
            if durable:
                # Make the rename durable: a rewrite we reported must survive a power cut.
                with contextlib.suppress(OSError):
                    os.fsync(folder)
            else:
                self._unsynced.add(target.parent)
        finally:
            os.close(folder)
            os.close(tmp)


def _write_new(folder: int, name: str, data: bytes, *, fsync: bool) -> None:
    """``data`` in a new file ``name`` of the open ``folder`` (never over a file or through a
    link), fsynced when asked."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    descriptor = os.open(name, flags, 0o600, dir_fd=folder)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        if fsync:
            handle.flush()
            os.fsync(handle.fileno())


def _read(path: Path, limit: int = -1) -> bytes | None:
    """A message file's bytes (at most ``limit``), or ``None`` when it is gone or is not a
    regular file. Opened without following a link and without blocking on a FIFO."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # a link, or a FIFO/socket nobody serves
            log.warning("maildir: skipping %s: not a regular file", path.name[:80])
            return None
        raise TransientError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            log.warning("maildir: skipping %s: not a regular file", path.name[:80])
            return None
        with os.fdopen(descriptor, "rb", closefd=False) as handle:
            return handle.read(limit)
    except OSError as exc:
        raise TransientError(f"{path}: cannot read ({exc.strerror})") from None
    finally:
        os.close(descriptor)


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISLNK, "a symbolic link"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a device"),
        (stat.S_ISBLK, "a device"),
        (stat.S_ISDIR, "a directory"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def _refuse_symlink(path: Path, error: type[ConfigError] | type[PermanentError]) -> None:
    """A Maildir folder that is a symbolic link is refused: drafts would be written (and mail
    read) wherever it points."""
    if path.is_symlink():
        raise error(
            f"{path} is a symbolic link; refused (the Maildir folders Drafts, Sent, cur, new "
            "and tmp must be real directories)"
        )


def _open_folder(path: Path) -> int:
    """A descriptor of the directory ``path`` whose last two components are not links (the
    folder and its cur/new/tmp), so that a link placed after the check is not followed."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        parent = os.open(path.parent, flags)
    except OSError as exc:
        raise _folder_error(path.parent, exc) from None
    try:
        return os.open(path.name, flags, dir_fd=parent)
    except OSError as exc:
        raise _folder_error(path, exc) from None
    finally:
        os.close(parent)


def _folder_error(path: Path, exc: OSError) -> Exception:
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return PermanentError(
            f"{path} is a symbolic link or not a directory; refused (the Maildir folders must "
            "be real directories)"
        )
    return TransientError(f"{path}: cannot open ({exc.strerror})")
