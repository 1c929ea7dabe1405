#!/usr/bin/env bash
# A private PostgreSQL cluster on a loopback port, for the tests and Ops/demo-cluster.sh (#19). Nothing of the
# system's own PostgreSQL is used or changed: the cluster lives in DIR and stops with `stop`.
#
#   bash Ops/pg.sh start DIR PORT    # initdb on first use (as the postgres user when run as root), start, print the URL
#   bash Ops/pg.sh stop DIR          # stop it (the folder stays; remove it yourself)
#
# Authentication is `trust` on 127.0.0.1 only (a throw-away cluster); a site's own server has passwords/TLS
# (README, "Several nodes").
set -euo pipefail
BIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[[ -x "$BIN/initdb" ]] || { echo "pg.sh: PostgreSQL server binaries not found (bash Ops/setup.sh --test installs postgresql)" >&2; exit 2; }
as_pg() { if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cmd=${1:?start or stop}; dir=${2:?folder}
case $cmd in
start)
  port=${3:?port}
  # The server must not keep its starter's descriptors: a test process starts this script with system(), which passes
  # every descriptor without close-on-exec — e.g. another test's pipe from a child whose output it reads to the end. A
  # server holding that pipe's write end would keep the reader waiting until the server stops (the test suite hung
  # that way, 2026-12-05). 255 is bash's own descriptor for this script.
  for fd in /proc/$$/fd/*; do
    n=${fd##*/}
    if [[ $n =~ ^[0-9]+$ ]] && (( n > 2 && n != 255 )); then eval "exec $n>&-" 2>/dev/null || true; fi
  done
  mkdir -p "$dir"
  if [[ $(id -u) -eq 0 ]]; then chown postgres: "$dir"; chmod 700 "$dir"; fi
  if [[ ! -f "$dir/data/PG_VERSION" ]]; then
    as_pg "$BIN/initdb" -D "$dir/data" -A trust -U nnseg -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  as_pg "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=200" start </dev/null >/dev/null 2>>"$dir/pg_ctl.log" \
    || { tail -20 "$dir/server.log" >&2; exit 1; }
  if ! as_pg "$BIN/psql" -h 127.0.0.1 -p "$port" -U nnseg -d postgres -Atc "SELECT 1 FROM pg_database WHERE datname = 'nnseg'" | grep -q 1; then
    as_pg "$BIN/createdb" -h 127.0.0.1 -p "$port" -U nnseg nnseg
  fi
  echo "postgres://nnseg@127.0.0.1:$port/nnseg"
  ;;
stop)
  if [[ -f "$dir/data/postmaster.pid" ]]; then as_pg "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true; fi
  ;;
*) echo "pg.sh: start DIR PORT | stop DIR" >&2; exit 64 ;;
esac
