"""The one trust store every connector uses: a configured CA bundle, else the usual variables.

README promises that ``SSL_CERT_FILE`` and ``REQUESTS_CA_BUNDLE`` are honoured; every connector
asks here so that they are honoured identically (order: the connector's ``ca_file``,
``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``, ``SSL_CERT_DIR``, the system's).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from recruitmail.contracts.errors import ConfigError

BUNDLE_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


def ca_bundle(ca_file: Path | None) -> Path | None:
    """The CA bundle file to trust, or ``None`` for the system store (or ``SSL_CERT_DIR``)."""
    if ca_file is not None:
        path = Path(ca_file).expanduser()
        if not path.is_file():
            raise ConfigError(f"ca_file {ca_file}: no such file")
        return path
    for variable in BUNDLE_VARIABLES:
        bundle = os.environ.get(variable)
        if bundle and Path(bundle).is_file():
            return Path(bundle)
    return None


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    """An ``ssl.SSLContext`` trusting :func:`ca_bundle`, else ``SSL_CERT_DIR``, else the system."""
    bundle = ca_bundle(ca_file)
    if bundle is not None:
        try:
            return ssl.create_default_context(cafile=str(bundle))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"CA bundle {bundle}: cannot load it ({exc})") from None
    directory = os.environ.get("SSL_CERT_DIR")
    if directory and Path(directory).is_dir():
        return ssl.create_default_context(capath=directory)
    return ssl.create_default_context()
