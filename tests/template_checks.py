"""What a reader of a rendered mail must never see: leftovers of templates and empty placeholders."""

from __future__ import annotations

import re
from html.parser import HTMLParser

# Each pattern is something a candidate would notice as a glitch in the mail.
GLITCHES: dict[str, re.Pattern[str]] = {
    "a Python None": re.compile(r"\bNone\b"),
    "template syntax": re.compile(r"\{\{|\}\}|\{%|%\}|\{#"),
    "an undefined value": re.compile(r"undefined", re.IGNORECASE),
    "an empty list": re.compile(r"\[\s*\]"),
    "empty parentheses": re.compile(r"\(\s*\)"),
    "a space before punctuation (empty value)": re.compile(r"[ \t\u00a0][,.;:!?)]"),
    "a doubled space (empty value)": re.compile(r"\S[ \u00a0]{2,}\S"),
    "a doubled comma": re.compile(r",\s*,"),
    # A short "Label:" line followed by nothing (a sentence may end in a colon before a block).
    "a label with nothing after it": re.compile(r"(?m)^[^\n:]{1,40}:[ \t]*(\n[ \t]*\n|\n?\Z)"),
}

# Text meant for the recruiter, not the candidate: a draft must be good to send as it stands.
INSTRUCTIONS: dict[str, re.Pattern[str]] = {
    "a bracketed note": re.compile(r"\[[^\[\]\n]*[^\W\d_][^\[\]\n]*\]"),
    "a placeholder": re.compile(r"\b(?:TODO|TBD|FIXME|XXX|Lorem ipsum)\b|<[A-ZÅÄÖ_ ]{3,}>|_{3,}"),
    "an instruction to the sender": re.compile(
        r"innan du skickar|before sending|ta bort hakparenteserna|remove the brackets"
        r"|skriv (?:två|några|en) |write (?:two|a few|one) ",
        re.IGNORECASE,
    ),
}

CLOSING = {"sv": "Vänliga hälsningar", "en": "Best regards"}


def glitches(text: str) -> list[str]:
    """Names of the glitches found in ``text`` (plain text as a reader sees it)."""
    return [
        f"{name}: …{text[max(m.start() - 30, 0) : m.end() + 30]!r}…"
        for name, pattern in GLITCHES.items()
        if (m := pattern.search(text))
    ]


def instructions(text: str) -> list[str]:
    """Text in ``text`` that speaks to the recruiter (a bracketed note, a placeholder, an
    instruction): a candidate must never read it."""
    return [
        f"{name}: …{text[max(m.start() - 30, 0) : m.end() + 30]!r}…"
        for name, pattern in INSTRUCTIONS.items()
        if (m := pattern.search(text))
    ]


class _VisibleText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("head", "script", "style", "title"):
            self._hidden += 1
        elif tag in ("p", "div", "li", "tr", "br", "table", "ol", "ul"):
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("head", "script", "style", "title"):
            self._hidden = max(self._hidden - 1, 0)
        elif tag in ("p", "div", "li", "tr", "td"):
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self.parts.append(data)


def visible_text(html: str) -> str:
    """The text a mail client shows for ``html``: one line per block, spaces collapsed."""
    parser = _VisibleText()
    parser.feed(html)
    parser.close()
    lines = (" ".join(line.split()) for line in "".join(parser.parts).splitlines())
    return "\n".join(line for line in lines if line)


EMPTY_ELEMENT = re.compile(r"<(p|li|strong|td|a|span|div|ol|ul|h\d)\b[^>]*>\s*</\1>")
