#!/bin/sh
# Runs one Economy service binary just long enough to apply its migrations, then stops it.
#
#   migrate.sh BINARY CONFIG_FILE PORT HEALTH_NAME
#
# The services have no migrate-only mode: each binary connects to its database and applies
# its embedded migrations (migrations/<service>/postgres) before it starts serving, so the
# first SERVING answer of its gRPC health check means "schema up to date". This script
# starts the binary on loopback, waits for that answer, then sends SIGTERM (graceful stop)
# and exits 0. If the binary exits first (bad URL, failed migration) the script fails with
# the binary's status; if it never becomes healthy within MIGRATE_TIMEOUT_SECS it fails.
# While it runs, the binary's background jobs may run one pass: they are replica-safe
# (deploy/SCALING.md), so that is harmless.
set -eu

binary="$1"
config="$2"
port="$3"
health_name="$4"
timeout="${MIGRATE_TIMEOUT_SECS:-300}"

echo "migrate: starting ${binary}"
"${binary}" --config "${config}" &
pid=$!

waited=0
until economy health "127.0.0.1:${port}" --service "${health_name}" --timeout 1s >/dev/null 2>&1; do
    if ! kill -0 "${pid}" 2>/dev/null; then
        status=0
        wait "${pid}" || status=$?
        echo "migrate: ${binary} exited with status ${status} before serving" >&2
        exit 1
    fi
    if [ "${waited}" -ge "${timeout}" ]; then
        echo "migrate: ${binary} not serving after ${timeout}s" >&2
        kill -TERM "${pid}" 2>/dev/null || true
        exit 1
    fi
    sleep 1
    waited=$((waited + 1))
done

echo "migrate: ${binary} migrated and serving; stopping it"
kill -TERM "${pid}"
wait "${pid}"
echo "migrate: ${binary} done"
