#!/usr/bin/env bash
# Run a command with a throwaway PostgreSQL cluster: `scripts/postgres.sh CMD ARGS...`.
# initdb into a mktemp directory, the server on a Unix socket inside it (no TCP port), stopped and
# deleted by a trap when CMD ends; CMD sees OVI_GATEWAY_TEST_DATABASE_URL. As root (CI), the cluster
# runs as the `postgres` user (initdb and postgres refuse root), created if missing. The server
# binaries come from the system packages; if none are installed, apt installs them. Any failure to
# start the cluster fails the script: tests that need PostgreSQL must never silently skip in CI.
set -euo pipefail

find_bin() {
    local dir
    for dir in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
        [ -x "$dir/initdb" ] && { echo "$dir"; return; }
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"; return
    fi
    return 1
}

bin=$(find_bin || true)
if [ -z "$bin" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "postgres.sh: installing PostgreSQL server binaries (apt)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null; }
        bin=$(find_bin)
    else
        echo "postgres.sh: no PostgreSQL server binaries (initdb, pg_ctl) found; install postgresql" >&2
        exit 1
    fi
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/ovi-pg.XXXXXX")
as=()
if [ "$(id -u)" = 0 ]; then
    id -u postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    chown postgres "$dir"
    as=(runuser -u postgres --)
fi

stop() {
    "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap stop EXIT

"${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --no-instructions >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; exit 1; }
"${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-k $dir -c listen_addresses='' -c max_connections=200" start >/dev/null \
    || { cat "$dir/server.log" >&2; exit 1; }

export OVI_GATEWAY_TEST_DATABASE_URL="postgresql://postgres@/postgres?host=$dir"
"$@"
