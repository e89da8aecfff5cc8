"""Jinja2 as recruitmail uses it: the sandbox its templates run in and the compiled-template
cache several processes share. Imported by ``render`` at the first template a process needs, so
that a process which renders nothing (an idle ``once``, ``status``) does without Jinja2 (~18 ms
of its start-up)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

from recruitmail.daemon.render import (
    _MISSING,
    _PLAIN_DATA,
    MAX_VALUE_CHARS,
    Record,
    _Budget,
    _compiled_code_fingerprint,
    _OverBudget,
    _sized,
    _small_range,
    log,
)


class LanguageEnvironment(SandboxedEnvironment):
    """A sandbox where ``{% extends "x" %}`` inside ``sv/…`` means ``sv/x``, and where no
    expression can make a huge value or run for long.

    Each language directory is self-contained, so names in extends/import/include resolve next
    to the template that uses them.
    """

    intercepted_binops = frozenset({"*", "**", "+"})

    def __init__(self, budget: _Budget, **options: Any) -> None:
        super().__init__(**options)
        self.budget = budget
        self.globals["range"] = _small_range

    def call_binop(
        self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any
    ) -> Any:
        self.budget.check()
        if operator == "**" and isinstance(right, int) and abs(right) > 64:
            raise SecurityError("the template raises a number to a huge power")
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(times, int)
                    and len(seq) * times > MAX_VALUE_CHARS
                ):
                    raise _OverBudget(f"a value grew past {MAX_VALUE_CHARS} characters")
        return _sized(super().call_binop(context, operator, left, right))

    def getattr(self, obj: Any, attribute: str) -> Any:
        self.budget.check()
        if type(obj) is Record and attribute[:1] != "_":
            # The context's own records hold plain data in their instance dictionary: what the
            # sandbox would allow anyway, found without its checks (most of a mail's look-ups).
            value = obj.__dict__.get(attribute, _MISSING)
            if type(value) in _PLAIN_DATA:
                return _sized(value)
        return _sized(super().getattr(obj, attribute))

    def getitem(self, obj: Any, argument: Any) -> Any:
        self.budget.check()
        return _sized(super().getitem(obj, argument))

    def call(
        __self,  # noqa: N805 - Jinja's own signature
        __context: jinja2.runtime.Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        __self.budget.check()
        return _sized(super().call(__context, __obj, *args, **kwargs))

    def join_path(self, template: str, parent: str) -> str:
        if "/" in template:
            return template
        directory = parent.rpartition("/")[0]
        return f"{directory}/{template}" if directory else template


class TemplateCache(jinja2.FileSystemBytecodeCache):
    """Compiled templates in a directory that several processes share.

    Jinja2 names an entry by the template's name and file and keeps a checksum of its source in
    it: an edited template misses and is compiled and stored again. An entry is written to a
    temporary file and renamed into place, so two processes writing at once leave one whole
    entry. An entry that cannot be read or written costs only the compile time, never a mail.
    """

    def __init__(self, directory: Path, environment: jinja2.Environment) -> None:
        super().__init__(str(directory), f"{_compiled_code_fingerprint(environment)}-%s.cache")

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception:  # noqa: BLE001 - a damaged entry is a miss: compile again
            bucket.reset()

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        try:
            super().dump_bytecode(bucket)
        except OSError as exc:
            log.debug("template cache %s not written: %s", self.directory, exc)
