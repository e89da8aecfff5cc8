#!/bin/sh
# Remove recruitmail's service and program. The configuration (/etc/recruitmail) and the state
# (/var/lib/recruitmail: which drafts were written) are kept unless --purge is given, so that a
# reinstall never drafts the same mail twice.
#
#   sudo scripts/uninstall.sh [--purge]
#
# Environment: PREFIX and DESTDIR as for install.sh.
set -eu

PREFIX=${PREFIX:-/opt/recruitmail}
DESTDIR=${DESTDIR:-}
SYSCONFDIR=/etc/recruitmail
UNITDIR=/etc/systemd/system
STATEDIR=/var/lib/recruitmail
purge=no

while [ $# -gt 0 ]; do
    case $1 in
        --purge) purge=yes; shift ;;
        -h|--help) sed -n '2,/^set -eu/p' "$0" | sed -e '/^set -eu/d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "uninstall.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [ -z "$DESTDIR" ] && [ "$(id -u)" -ne 0 ]; then
    echo "uninstall.sh: run it as root (or set DESTDIR for a staging directory)" >&2
    exit 1
fi

systemd=no
[ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && systemd=yes

if [ "$systemd" = yes ]; then
    systemctl disable --now recruitmail.service 2>/dev/null || true
fi

rm -f "$DESTDIR$UNITDIR/recruitmail.service"
rm -rf "$DESTDIR$UNITDIR/recruitmail.service.d"
if [ "$systemd" = yes ]; then
    systemctl daemon-reload
fi

# Refuse to remove anything that does not look like our virtual environment.
venv=$DESTDIR$PREFIX
if [ -e "$venv" ]; then
    if [ -f "$venv/pyvenv.cfg" ] && [ -e "$venv/bin/recruitmail" ]; then
        rm -rf "$venv"
        echo "removed $PREFIX"
    else
        echo "uninstall.sh: $venv is not a recruitmail installation; left alone" >&2
        exit 1
    fi
fi

if [ "$purge" = yes ]; then
    rm -rf "$DESTDIR$SYSCONFDIR"
    # DynamicUser= keeps the real directory under /var/lib/private.
    rm -rf "$DESTDIR$STATEDIR" "$DESTDIR/var/lib/private/recruitmail"
    echo "removed $SYSCONFDIR and $STATEDIR"
else
    echo "kept $SYSCONFDIR (configuration, credentials) and $STATEDIR (which drafts were written)"
    echo "remove them too with: uninstall.sh --purge"
fi
