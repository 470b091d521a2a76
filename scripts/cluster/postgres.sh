#!/usr/bin/env bash
# Throw-away PostgreSQL server for kdbench's distributed tests and runs.
#
#   postgres.sh start DIR [PORT]   initdb DIR/pgdata if needed, start it, print the URL (last line)
#   postgres.sh stop DIR           pg_ctl stop -m fast; succeeds if already stopped
#   postgres.sh url DIR [DATABASE] print the SQLAlchemy URL of DIR's server; with DATABASE, of
#                                  that database (created, owned by `kdbench`, if missing):
#                                  Optuna and MLflow each need their own (both keep an
#                                  alembic_version table), e.g. `url DIR mlflow` for the server
#
# The server listens on 127.0.0.1 only (unix socket in DIR/socket), uses scram-sha-256 with a
# random password (DIR/password, mode 600) and has a role and database `kdbench`.
# URL: postgresql+psycopg://kdbench:<password>@127.0.0.1:<port>/kdbench (also in DIR/url, mode 600).
# Exit codes: 0 ok, 1 failure, 2 usage, 3 PostgreSQL missing and cannot be installed.
set -euo pipefail

DEFAULT_PORT=55432
PROG=$(basename "$0")

die() { echo "error: $*" >&2; exit 1; }
usage() {
  echo "usage: $PROG start DIR [PORT] | stop DIR | url DIR [DATABASE]" >&2
  exit 2
}

# --- locate (or install) the PostgreSQL server binaries -------------------------------------
find_pg_bin() {
  local best
  # Debian layout: /usr/lib/postgresql/<major>/bin; take the highest major version.
  best=$(for d in /usr/lib/postgresql/*/bin; do
           [[ -x $d/initdb && -x $d/pg_ctl ]] && echo "$d"
         done | sort -t/ -k4,4V | tail -n1)
  if [[ -n $best ]]; then echo "$best"; return 0; fi
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(command -v initdb)"; return 0
  fi
  return 1
}

ensure_pg_bin() {
  if PGBIN=$(find_pg_bin); then return 0; fi
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: PostgreSQL server binaries (initdb, pg_ctl) not found and apt-get is not usable" \
      "(need root on Debian/Ubuntu). Install them, e.g. as root:" \
      "apt-get install -y --no-install-recommends postgresql" >&2
    exit 3
  fi
  echo "postgres.sh: installing postgresql with apt-get ..." >&2
  local t0=$SECONDS
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y --no-install-recommends postgresql >&2; then
    apt-get update >&2 || true
    apt-get install -y --no-install-recommends postgresql >&2 \
      || { echo "error: apt-get install postgresql failed" >&2; exit 3; }
  fi
  echo "postgres.sh: installed in $((SECONDS - t0)) s" >&2
  PGBIN=$(find_pg_bin) || { echo "error: postgresql installed but initdb/pg_ctl not found" >&2; exit 3; }
}

# --- run a command as the user owning the cluster --------------------------------------------
# As root, PostgreSQL must run as `postgres` (pg_ctl/initdb refuse root); otherwise as ourselves.
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u "$PGUSER_OS" -- "$@"
  else
    "$@"
  fi
}

pick_os_user() {
  if [[ $(id -u) -eq 0 ]]; then
    if [[ -d $PGDATA ]]; then
      PGUSER_OS=$(stat -c %U "$PGDATA")
      [[ $PGUSER_OS != root ]] || die "$PGDATA is owned by root; PostgreSQL cannot run as root"
    else
      PGUSER_OS=postgres
    fi
    id "$PGUSER_OS" >/dev/null 2>&1 || die "user '$PGUSER_OS' does not exist (is the postgresql package installed?)"
  else
    PGUSER_OS=$(id -un)
  fi
}

is_running() {
  [[ -f $PGDATA/PG_VERSION ]] || return 1
  as_pg "$PGBIN/pg_ctl" status -D "$PGDATA" >/dev/null 2>&1
}

write_url() {
  local port=$1 pw
  pw=$(cat "$DIR/password")
  ( umask 077; echo "postgresql+psycopg://kdbench:${pw}@127.0.0.1:${port}/kdbench" > "$DIR/url.tmp" )
  mv -f "$DIR/url.tmp" "$DIR/url"
  chmod 600 "$DIR/url"
}

psql_super() {  # run SQL as the superuser over the unix socket (scram, password from DIR/password)
  PGPASSWORD=$(cat "$DIR/password") "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR/socket" \
    -p "$1" -U postgres -d postgres -tA -c "$2"
}

init_cluster() {
  local pwtmp
  [[ -e $PGDATA ]] && die "$PGDATA exists but is not an initialised cluster (no PG_VERSION); remove it"
  if [[ ! -s $DIR/password ]]; then
    ( umask 077; head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/password" )
  fi
  chmod 600 "$DIR/password"
  mkdir -p "$PGDATA" "$DIR/socket"
  chmod 700 "$PGDATA"
  # initdb reads the superuser password from a file the cluster user can read; remove it after.
  pwtmp=$DIR/.initdb-pw.$$
  ( umask 077; cp "$DIR/password" "$pwtmp" )
  if [[ $(id -u) -eq 0 ]]; then
    chown "$PGUSER_OS": "$PGDATA" "$DIR/socket" "$pwtmp"
  fi
  if ! as_pg "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=scram-sha-256 --pwfile="$pwtmp" \
      -E UTF8 --locale=C >"$DIR/initdb.log" 2>&1; then
    rm -f "$pwtmp"
    tail -n 20 "$DIR/initdb.log" >&2
    die "initdb failed (log: $DIR/initdb.log)"
  fi
  rm -f "$pwtmp"
  cat >> "$PGDATA/postgresql.conf" <<EOF

# --- kdbench scripts/cluster/postgres.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$DIR/socket'
password_encryption = 'scram-sha-256'
EOF
}

cmd_start() {
  local port=${1:-}
  if [[ -z $port ]]; then
    if [[ -s $DIR/port ]]; then port=$(cat "$DIR/port"); else port=$DEFAULT_PORT; fi
  fi
  [[ $port =~ ^[0-9]+$ ]] && (( port > 0 && port < 65536 )) || die "invalid port '$port'"

  ensure_pg_bin
  mkdir -p "$DIR"
  pick_os_user

  # unix socket paths are limited to 107 bytes
  local sock="$DIR/socket/.s.PGSQL.$port"
  (( ${#sock} <= 107 )) || die "DIR path too long for a unix socket ($sock); use a shorter DIR"

  if is_running; then
    [[ -s $DIR/url ]] || die "server in $PGDATA is running but $DIR/url is missing"
    cat "$DIR/url"
    return 0
  fi

  if [[ $(id -u) -eq 0 ]]; then
    chmod a+x "$DIR"   # let the cluster user traverse DIR (files inside stay private)
    if ! runuser -u "$PGUSER_OS" -- test -x "$DIR"; then
      local p=$DIR blocker=$DIR
      while [[ $p != / ]]; do
        p=$(dirname "$p")
        runuser -u "$PGUSER_OS" -- test -x "$p" || blocker=$p
      done
      die "user $PGUSER_OS cannot reach $DIR: $blocker is not traversable by it" \
        "(mode 700, like a pytest tmp_path or mktemp -d parent). Use a DIR whose parents are" \
        "world-traversable (DIR=\$(mktemp -d) itself is fine), or chmod o+x $blocker"
    fi
  fi

  if [[ ! -f $PGDATA/PG_VERSION ]]; then
    init_cluster
  else
    [[ -s $DIR/password ]] || die "$PGDATA exists but $DIR/password is missing"
    mkdir -p "$DIR/socket"
    [[ $(id -u) -ne 0 ]] || chown "$PGUSER_OS": "$DIR/socket"
  fi
  echo "$port" > "$DIR/port"

  touch "$DIR/postgres.log"
  [[ $(id -u) -ne 0 ]] || chown "$PGUSER_OS": "$DIR/postgres.log"
  if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$DIR/postgres.log" -o "-p $port" -w -t 60 start >/dev/null; then
    tail -n 20 "$DIR/postgres.log" >&2 || true
    die "pg_ctl start failed (port $port busy? log: $DIR/postgres.log)"
  fi

  # role and database (idempotent: also repairs a half-finished first start)
  local pw
  pw=$(cat "$DIR/password")
  if [[ -z $(psql_super "$port" "select 1 from pg_roles where rolname = 'kdbench'") ]]; then
    psql_super "$port" "create role kdbench login password '$pw'" >/dev/null
  fi
  if [[ -z $(psql_super "$port" "select 1 from pg_database where datname = 'kdbench'") ]]; then
    psql_super "$port" "create database kdbench owner kdbench" >/dev/null
  fi

  write_url "$port"
  cat "$DIR/url"
}

cmd_stop() {
  [[ -f $PGDATA/PG_VERSION ]] || { echo "postgres.sh: no cluster in $PGDATA; nothing to stop" >&2; return 0; }
  PGBIN=$(find_pg_bin) || die "PostgreSQL binaries not found; cannot stop $PGDATA"
  pick_os_user
  if ! is_running; then
    echo "postgres.sh: server in $PGDATA is not running" >&2
    return 0
  fi
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null \
    || die "pg_ctl stop failed (log: $DIR/postgres.log)"
  echo "postgres.sh: stopped server in $PGDATA" >&2
}

cmd_url() {
  local db=${1:-kdbench} port
  [[ -s $DIR/url ]] || die "no URL in $DIR/url (run: $PROG start $DIR)"
  if [[ $db == kdbench ]]; then cat "$DIR/url"; return 0; fi
  [[ $db =~ ^[a-z_][a-z0-9_]{0,62}$ ]] \
    || die "database name '$db': use lower-case letters, digits and _ (a letter or _ first)"
  PGBIN=$(find_pg_bin) || die "PostgreSQL binaries not found"
  pick_os_user
  is_running || die "the server in $PGDATA is not running (run: $PROG start $DIR)"
  port=$(cat "$DIR/port")
  if [[ -z $(psql_super "$port" "select 1 from pg_database where datname = '$db'") ]]; then
    psql_super "$port" "create database $db owner kdbench" >/dev/null
  fi
  sed "s#/kdbench\$#/$db#" "$DIR/url"
}

[[ $# -ge 2 ]] || usage
CMD=$1
DIR=$2
[[ -n $DIR ]] || usage
if [[ $CMD == start ]]; then mkdir -p "$DIR" || die "cannot create folder $DIR"; fi
if [[ ! -d $DIR ]]; then
  [[ $CMD == stop ]] && { echo "$PROG: $DIR does not exist; nothing to stop" >&2; exit 0; }
  die "folder $DIR does not exist"
fi
DIR=$(cd "$DIR" && pwd -P)
PGDATA=$DIR/pgdata

case $CMD in
  start) [[ $# -le 3 ]] || usage; cmd_start "${3:-}" ;;
  stop)  [[ $# -eq 2 ]] || usage; cmd_stop ;;
  url)   [[ $# -le 3 ]] || usage; cmd_url "${3:-}" ;;
  *) usage ;;
esac
