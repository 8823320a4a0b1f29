#!/bin/sh
# PostgreSQL as its Debian package ships it, started the way a packaging script would: a new
# cluster (initdb, trust authentication on loopback) owned by the postgres user, then the
# server itself in the foreground on 127.0.0.1:5432. Nothing of PostgreSQL is changed. Its
# log goes to a file in the cluster's folder: the view's first connection may come while it
# starts up, which it logs as FATAL (the survive check reads the app's output for such lines).
set -eu
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
dir=$(mktemp -d /tmp/dmh-postgres-XXXXXX)
chown postgres "$dir"
su postgres -s /bin/sh -c "'$bin/initdb' -D '$dir/data' -A trust -U postgres >/dev/null"
exec su postgres -s /bin/sh -c "exec '$bin/postgres' -D '$dir/data' -k '$dir' -c listen_addresses=127.0.0.1 -p 5432 2>>'$dir/server.log'"
