#!/usr/bin/env bash
# Makes sure etcd is installed (the routing control's real backend; tests and `regionflow up` run their own
# members on free ports) and a PostgreSQL server answers on 127.0.0.1:5432 (trust auth), installing both on
# a bare machine.
set -euo pipefail

# etcdctl (etcd-client) is how the tests, and operators, read the control's record straight from etcd.
if ! command -v etcd >/dev/null 2>&1 || ! command -v etcdctl >/dev/null 2>&1; then
  echo "installing etcd and etcdctl (apt)…"
  export DEBIAN_FRONTEND=noninteractive
  # Debian's etcd-server starts its own etcd.service on 127.0.0.1:2379 from its postinst. Nothing here
  # needs it, so forbid service starts during the install (policy-rc.d exit 101, honoured by invoke-rc.d
  # and deb-systemd-invoke) unless the machine already has a policy of its own.
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && own_policy=1
  fi
  apt-get update -qq && apt-get install -y -qq etcd-server etcd-client >/dev/null || status=$?
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
  if [ "${status:-0}" != 0 ]; then echo "installing etcd-server and etcd-client failed" >&2; exit 1; fi
fi
# The package enables its unit: keep it stopped and off at boot (a leftover etcd on 2379 is harmless to the
# tests, but it is not ours to run).
if [ -d /run/systemd/system ]; then
  if systemctl is-enabled --quiet etcd 2>/dev/null || systemctl is-active --quiet etcd 2>/dev/null; then
    systemctl disable --now --quiet etcd || true
  fi
elif [ -x /etc/init.d/etcd ] && /etc/init.d/etcd status >/dev/null 2>&1; then
  /etc/init.d/etcd stop >/dev/null || true
fi
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then exit 0; fi
if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
  echo "installing PostgreSQL (apt)…"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq postgresql >/dev/null
fi
ver=$(ls /etc/postgresql | sort -V | tail -n 1)
conf=/etc/postgresql/$ver/main
# Tests connect as postgres over loopback without a password.
if ! grep -q "regionflow-trust" "$conf/pg_hba.conf"; then
  sed -i '1i host all all 127.0.0.1/32 trust # regionflow-trust\nhost all all ::1/128 trust # regionflow-trust' "$conf/pg_hba.conf"
fi
pg_ctlcluster --skip-systemctl-redirect "$ver" main start || pg_ctlcluster "$ver" main start
for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && exit 0; sleep 1; done
echo "PostgreSQL did not start on 127.0.0.1:5432" >&2; exit 1
