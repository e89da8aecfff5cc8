"""recruitmail: drafts warm, timely candidate mails in the recruiter's own mailbox.

The one import name of the project. The repository keeps its working folders at the top
(``daemon/`` the core, ``connectors/`` the providers); the build maps them to
``recruitmail.daemon`` and ``recruitmail.connectors`` (``[tool.setuptools] package-dir`` in
``pyproject.toml``), so an installed recruitmail owns ``recruitmail`` and nothing else.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # ``__version__`` reads the installed metadata when asked for: importing importlib.metadata
    # costs every command's start-up some 40 ms, and only ``--version``-like callers need it.
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("recruitmail")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"
