# Sourced by .ci/run: start a throwaway PostgreSQL cluster for the tests that need one, export
# PROTOPAY_PG_URL, and stop it (and delete it) when the script exits. Uses the machine's
# server binaries (installing Debian's `postgresql` if there are none); the server refuses to
# run as root, so as root it runs as the `postgres` OS user.

pg_initdb=$(command -v initdb || ls -d /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -1 || true)
if [ -z "$pg_initdb" ]; then
  echo "no PostgreSQL server binaries; installing Debian's postgresql"
  apt-get install -y --no-install-recommends postgresql >/dev/null
  pg_initdb=$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)
fi
pg_bin=$(dirname "$(readlink -f "$pg_initdb")")

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_dir=$(mktemp -d /tmp/protopay-ci-pg.XXXXXX)
[ "$(id -u)" = 0 ] && chown postgres:postgres "$pg_dir"
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_postgres "$pg_bin/initdb" -U postgres --auth=trust -E UTF8 --no-sync -D "$pg_dir/data" >/dev/null
as_postgres "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
  -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null

pg_stop() {
  as_postgres "$pg_bin/pg_ctl" -D "$pg_dir/data" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$pg_dir"
}
trap pg_stop EXIT

export PROTOPAY_PG_URL="postgres://postgres@127.0.0.1:$pg_port/postgres?sslmode=disable"
# How `cli/tests/partitions.rs` restarts the database under its instances (a crash restart).
if [ "$(id -u)" = 0 ]; then pg_as="runuser -u postgres --"; else pg_as=""; fi
export PROTOPAY_PG_RESTART="$pg_as $pg_bin/pg_ctl -D $pg_dir/data -l $pg_dir/log -m immediate -w restart >/dev/null"
echo "PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$pg_port"
