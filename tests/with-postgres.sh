#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL cluster: `tests/with-postgres.sh pytest ...`.
#
# The cluster lives in a temporary directory, listens on 127.0.0.1 on a free port, trusts
# local connections and is stopped and deleted when the command ends, whatever its exit
# status.  The command sees FRAMESVC_DATABASE_URL naming the cluster's `postgres`
# database; tests/conftest.py then creates (and drops) one database per test server.
# Durability is switched off: nothing here has to survive a crash of the machine.
# As root, the cluster runs as the `postgres` user (initdb refuses root).
set -euo pipefail

pg_bin="${PG_BIN:-}"
if [[ -z "$pg_bin" ]]; then
    if command -v pg_config >/dev/null && [[ -x "$(pg_config --bindir)/pg_ctl" ]]; then
        pg_bin="$(pg_config --bindir)"
    else
        pg_bin="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
    fi
fi
if [[ ! -x "$pg_bin/pg_ctl" ]]; then
    echo "with-postgres: no PostgreSQL server binaries (install the postgresql package)" >&2
    exit 2
fi

as_owner=()
workdir="$(mktemp -d /tmp/framesvc-pg.XXXXXX)"
if [[ "$(id -u)" == 0 ]]; then
    chown postgres "$workdir"
    as_owner=(runuser -u postgres --)
fi

cleanup() {
    "${as_owner[@]}" "$pg_bin/pg_ctl" -D "$workdir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$workdir"
}
trap cleanup EXIT

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"${as_owner[@]}" "$pg_bin/initdb" -D "$workdir/data" -U postgres --auth=trust \
    --encoding=UTF8 --locale=C.UTF-8 >"$workdir/initdb.log"
"${as_owner[@]}" "$pg_bin/pg_ctl" -D "$workdir/data" -l "$workdir/server.log" -w -t 60 \
    -o "-p $port -k $workdir -c listen_addresses=127.0.0.1 -c max_connections=300 \
        -c fsync=off -c synchronous_commit=off -c full_page_writes=off" start >/dev/null

export FRAMESVC_DATABASE_URL="postgresql+asyncpg://postgres@127.0.0.1:$port/postgres"
echo "with-postgres: PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') on port $port"
status=0
"$@" || status=$?
exit "$status"
