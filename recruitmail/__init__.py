"""recruitmail: drafts warm, timely candidate mails in the recruiter's own mailbox.

The one import name of the project. The repository keeps its working folders at the top
(``daemon/`` the core, ``connectors/`` the providers); the build maps them to
``recruitmail.daemon`` and ``recruitmail.connectors`` (``[tool.setuptools] package-dir`` in
``pyproject.toml``), so an installed recruitmail owns ``recruitmail`` and nothing else.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("recruitmail")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
