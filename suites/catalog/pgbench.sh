#!/bin/sh
# PostgreSQL's own benchmark client, as a database's users run it: pgbench's tables are made
# once (scale 1: 100,000 accounts), then each run is five seconds of its TPC-B-like
# transactions from two clients. Exits non-zero when the server does not serve them.
set -eu
db="-h 127.0.0.1 -p 5432 -U postgres"
if ! psql $db -d postgres -Atqc "SELECT 1 FROM pgbench_branches LIMIT 1" >/dev/null 2>&1; then
    pgbench $db -i -q -s 1 postgres
fi
exec pgbench $db -c 2 -T 5 -n postgres
