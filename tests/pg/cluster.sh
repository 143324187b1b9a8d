#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the tests.
#
#   tests/pg/cluster.sh start [DIR]   create and start a cluster in DIR (default: a new temporary
#                                     directory); prints DIR on stdout
#   tests/pg/cluster.sh url DIR       prints the URL of its test database
#   tests/pg/cluster.sh stop DIR      stops it and removes DIR
#
# PostgreSQL comes from Debian's packages (installed when missing, which needs root). The server
# never runs as root: when this script is root (CI), the cluster belongs to the `postgres` user and
# every server command runs through `runuser -u postgres`. It listens on 127.0.0.1 on a free port,
# with its socket inside DIR (not /var/run), trusts local connections, and trades durability for
# speed (fsync off): it lives for one test run. PG_DURABLE=1 at `start` keeps PostgreSQL's durable
# defaults instead (fsync, synchronous_commit, full_page_writes on; bench/pg.sh). It has GoTrue's
# roles (authenticated, anon, service_role, supabase_auth_admin) and a database `ferrotrue_test`;
# the URL connects as the superuser `postgres`, so tests can create a database each.
set -euo pipefail

die() { echo "cluster.sh: $*" >&2; exit 1; }

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  [ -n "$bin" ] && [ -x "$bin/initdb" ] && { echo "$bin"; return; }
  return 1
}

install_postgres() {
  [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed and this is not root: apt-get install postgresql"
  echo "cluster.sh: installing PostgreSQL (Debian packages)" >&2
  # The package would create and start a system cluster on 5432; the tests need none.
  mkdir -p /etc/postgresql-common
  grep -qs '^create_main_cluster' /etc/postgresql-common/createcluster.conf \
    || echo 'create_main_cluster = false' >> /etc/postgresql-common/createcluster.conf
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
}

# Runs a command as the cluster's owner.
as_owner() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

start() {
  local dir=${1:-} bin port tries=0 durability="-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  [ "${PG_DURABLE:-0}" = 1 ] && durability="-c fsync=on -c synchronous_commit=on -c full_page_writes=on"
  bin=$(pg_bin) || { install_postgres; bin=$(pg_bin) || die "no initdb after installing postgresql"; }
  if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
    useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
  [ -n "$dir" ] || dir=$(mktemp -d "${TMPDIR:-/tmp}/ferrotrue-pg.XXXXXX")
  mkdir -p "$dir"
  [ "$(id -u)" = 0 ] && chown postgres: "$dir"
  chmod 700 "$dir"
  as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; die "initdb failed"; }
  while :; do
    port=$(free_port)
    if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 start -o \
      "-c listen_addresses=127.0.0.1 -p $port -k $dir $durability \
       -c max_connections=300 -c shared_buffers=64MB" >/dev/null; then
      break
    fi
    tries=$((tries + 1))
    [ "$tries" -lt 5 ] || { cat "$dir/server.log" >&2; die "the server did not start"; }
  done
  echo "$bin" >"$dir/bin"
  echo "postgres://postgres@127.0.0.1:$port/ferrotrue_test?sslmode=disable" >"$dir/url"
  as_owner "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 -q >/dev/null <<SQL
CREATE ROLE anon NOLOGIN NOINHERIT;
CREATE ROLE authenticated NOLOGIN NOINHERIT;
CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
CREATE ROLE supabase_auth_admin LOGIN NOINHERIT CREATEROLE;
CREATE DATABASE ferrotrue_test;
SQL
  echo "$dir"
}

url() {
  local dir=${1:?usage: cluster.sh url DIR}
  cat "$dir/url"
}

stop() {
  local dir=${1:?usage: cluster.sh stop DIR}
  [ -f "$dir/bin" ] || die "$dir is not a cluster made by this script"
  as_owner "$(cat "$dir/bin")/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start) start "${2:-}" ;;
  url) url "${2:-}" ;;
  stop) stop "${2:-}" ;;
  *) die "usage: cluster.sh start [DIR] | url DIR | stop DIR" ;;
esac
