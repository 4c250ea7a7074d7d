#!/usr/bin/env bash
# Build the .deb, install it, check what it installed, verify the units with systemd-analyze
# (syntax and the hardening threshold), purge it, and check the system is as it was.
# Run as root on a Debian machine; CI runs it from scripts/test.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

pass=0
fail=0
check() {   # check DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@" >/dev/null 2>&1; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAILED: $what"; fi
}

if [ "$(id -u)" != 0 ] || ! command -v dpkg >/dev/null; then
    echo "package test skipped: needs root and dpkg"
    exit 0
fi
command -v man >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq man-db >/dev/null; }

packaging/build-deb.sh >/dev/null
deb=$(ls -t target/debian/syn-appliance_*.deb | head -n1)
echo "package: $deb"
[ "$(dpkg-deb --field "$deb" Package)" = syn-appliance ]

before_etc=$(ls -A /etc | sort | md5sum)
before_var_lib=$(test -e /var/lib/syn && echo present || echo absent)
before_backups=$(test -e /var/backups/syn && echo present || echo absent)
dpkg -i "$deb" >/dev/null

check "binary installed" test -x /usr/bin/syn
check "binary runs" /usr/bin/syn --version
for service in cell cortex cryotank axon sync200; do
    check "syn-$service@.service installed" test -f "/usr/lib/systemd/system/syn-$service@.service"
done
check "sysusers file installed" test -f /usr/lib/sysusers.d/syn.conf
check "syn user created" getent passwd syn
check "man page installed" test -f /usr/share/man/man1/syn.1.gz
check "man page renders" sh -c 'man -P cat syn | grep -q easycert'
check "bash completion installed" test -f /usr/share/bash-completion/completions/syn
check "example configurations installed" test -f /etc/syn/cell.env.example -a -f /etc/syn/cortex.env.example \
    -a -f /etc/syn/cryotank.env.example -a -f /etc/syn/backup.env.example -a -f /etc/syn/sync200.env.example -a -f /etc/syn/axon.env.example
for timer in backup verify coldbackup; do
    check "syn-$timer@.timer installed" test -f "/usr/lib/systemd/system/syn-$timer@.timer"
    check "syn-$timer@.service installed" test -f "/usr/lib/systemd/system/syn-$timer@.service"
done
for runbook in nightly-live-backup restore-from-cold-backup verify-latest-backup renew-certs; do
    check "runbook $runbook installed" test -f "/usr/share/syn/runbooks/$runbook.rhai"
done
check "syn runbook runs" sh -c 'syn runbook --help | grep -q dry-run'
check "runbook man page installed" test -f /usr/share/man/man1/syn-runbook.1.gz
check "state directories made" test -d /var/lib/syn/cortex -a -d /var/lib/syn/cryotank -a -d /var/lib/syn/axon -a -d /var/backups/syn
for unit in /usr/lib/systemd/system/syn-*.service; do
    name=$(basename "$unit")
    # The failure reporter's instance is the name of the unit that failed.
    case "$name" in
        syn-runbook-failed@*) instance=${name/@./@syn-backup@ci.service.} ;;
        *) instance=${name/@./@ci.} ;;
    esac
    check "systemd-analyze verify $name" systemd-analyze verify "$instance"
    score=$(systemd-analyze security --offline=yes "$unit" 2>/dev/null | awk '/Overall exposure level/ {print $(NF-2)}')
    echo "  $name exposure: $score"
    check "$name exposure <= 2.0" awk -v s="$score" 'BEGIN { exit !(s != "" && s <= 2.0) }'
done
for timer in /usr/lib/systemd/system/syn-*.timer; do
    name=$(basename "$timer")
    check "systemd-analyze verify $name" systemd-analyze verify "${name/@./@ci.}"
done

dpkg --purge syn-appliance >/dev/null
check "binary removed" test ! -e /usr/bin/syn
check "units and timers removed" sh -c '! ls /usr/lib/systemd/system/syn-* 2>/dev/null'
check "runbooks removed" test ! -e /usr/share/syn
if [ "$before_var_lib" = absent ]; then
    check "/var/lib/syn removed" test ! -e /var/lib/syn
fi
if [ "$before_backups" = absent ]; then
    check "/var/backups/syn removed" test ! -e /var/backups/syn
fi
check "/etc/syn removed" test ! -e /etc/syn
check "/etc otherwise as before" test "$(ls -A /etc | sort | md5sum)" = "$before_etc"

echo "package: $pass passed, $fail failed"
[ "$fail" = 0 ]
