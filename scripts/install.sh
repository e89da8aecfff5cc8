#!/bin/sh
# Install recruitmail as a system service: a virtual environment under /opt/recruitmail with the
# wheel from dist/, the example configuration in /etc/recruitmail/ (an existing one is kept), and
# the systemd unit in /etc/systemd/system/. Run it again to upgrade.
#
#   sudo scripts/install.sh [--wheel dist/recruitmail-X.whl]
#
# Environment:
#   PYTHON   the interpreter for the virtual environment (python3, 3.11 or newer)
#   EXTRAS   optional features to install (default: all; e.g. "metrics,imap" or "" for none)
#   PREFIX   where the virtual environment goes (default: /opt/recruitmail)
#   DESTDIR  a staging root prepended to every path, for trying the installation out; nothing
#            outside it is touched and systemd is not told (the venv only runs from there)
set -eu

PYTHON=${PYTHON:-python3}
EXTRAS=${EXTRAS-all}
PREFIX=${PREFIX:-/opt/recruitmail}
DESTDIR=${DESTDIR:-}
SYSCONFDIR=/etc/recruitmail
UNITDIR=/etc/systemd/system

here=$(cd "$(dirname "$0")/.." && pwd)
wheel=

usage() {
    sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//'
}

while [ $# -gt 0 ]; do
    case $1 in
        --wheel) wheel=${2:?--wheel needs a file}; shift 2 ;;
        --wheel=*) wheel=${1#--wheel=}; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ -z "$wheel" ]; then
    # The newest wheel in dist/, as `make wheel` leaves it.
    # shellcheck disable=SC2012  # our own wheel names have no odd characters
    wheel=$(ls -t "$here"/dist/recruitmail-*.whl 2>/dev/null | head -n 1 || true)
    if [ -z "$wheel" ]; then
        echo "install.sh: no wheel in $here/dist/; build one first with: make wheel" >&2
        exit 1
    fi
fi
[ -f "$wheel" ] || { echo "install.sh: $wheel: no such wheel" >&2; exit 1; }

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: run it as root (or set DESTDIR to try it out in a staging directory)" >&2
    exit 1
fi

venv=$DESTDIR$PREFIX
etc=$DESTDIR$SYSCONFDIR
units=$DESTDIR$UNITDIR

echo "==> virtual environment in $venv"
if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
fi
"$venv/bin/python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "install.sh: $venv uses a Python older than 3.11; remove it or set PYTHON" >&2
    exit 1
}

echo "==> installing $(basename "$wheel")${EXTRAS:+ [$EXTRAS]}"
target=$wheel
[ -n "$EXTRAS" ] && target="${wheel}[${EXTRAS}]"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "$target"
# An upgrade to a rebuilt wheel of the same version must still replace the code.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"

share=$venv/share/recruitmail
mkdir -p "$share"
if [ -f "$here/docs/OPERATIONS.md" ]; then
    install -m 0644 "$here/docs/OPERATIONS.md" "$share/OPERATIONS.md"
fi

echo "==> configuration in $etc"
install -d -m 0755 "$etc"
# Secrets live here, readable by root only; the service gets them through LoadCredential*=.
install -d -m 0700 "$etc/credentials"
example=$share/config/recruitmail.example.toml
[ -f "$example" ] || example=$here/config/recruitmail.example.toml
if [ -e "$etc/recruitmail.toml" ]; then
    echo "    keeping the existing $SYSCONFDIR/recruitmail.toml"
    if [ -f "$example" ]; then
        install -m 0644 "$example" "$etc/recruitmail.example.toml"
        echo "    (the new example is beside it: recruitmail.example.toml)"
    fi
elif [ -f "$example" ]; then
    # World-readable on purpose: the service runs as a dynamic user, and the file holds no
    # secrets, only references to them.
    install -m 0644 "$example" "$etc/recruitmail.toml"
else
    echo "install.sh: warning: no example configuration found; write $SYSCONFDIR/recruitmail.toml yourself" >&2
fi

echo "==> systemd unit in $units"
install -d -m 0755 "$units"
sed -e "s#/opt/recruitmail/#$PREFIX/#g" "$here/systemd/recruitmail.service" >"$units/recruitmail.service.new"
chmod 0644 "$units/recruitmail.service.new"
mv "$units/recruitmail.service.new" "$units/recruitmail.service"

running=no
if [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; then
    systemctl daemon-reload
    running=yes
fi

cat <<NEXT

recruitmail is installed in $PREFIX.

Next steps:
  1. Edit $SYSCONFDIR/recruitmail.toml: company, mailboxes and their source and sink.
  2. Store each secret as an encrypted systemd credential, e.g.
       systemd-creds encrypt --name=graph-client-secret secret.txt \\
           $SYSCONFDIR/credentials/graph-client-secret.cred
     then refer to it in the configuration as "credential:graph-client-secret" and enable its
     LoadCredentialEncrypted= line with: systemctl edit recruitmail
  3. Prove credentials and permissions for every mailbox, before enabling the service:
       $PREFIX/bin/recruitmail check --online --config $SYSCONFDIR/recruitmail.toml
     (with credential: references, run it where the credentials are, e.g.
       systemd-run --pipe --wait --collect \
           -p LoadCredentialEncrypted=graph-client-secret:$SYSCONFDIR/credentials/graph-client-secret.cred \
           $PREFIX/bin/recruitmail check --online --config $SYSCONFDIR/recruitmail.toml)
  4. Start it:  systemctl enable --now recruitmail
     Follow it: journalctl -u recruitmail -f
NEXT
if [ "$running" = yes ] && systemctl --quiet is-active recruitmail 2>/dev/null; then
    echo
    echo "The service is running the previous version: systemctl restart recruitmail"
fi
