#!/bin/sh
# Start PostgreSQL for central. On the first start (an empty volume) make the cluster: the
# superuser "postgres" reachable only over the local socket by the OS user postgres (peer),
# and the login role "pht" (no superuser) owning database "pht", its password read from
# the secret file, password logins (scram-sha-256) over the compose network. Then run the
# server as user postgres.
set -eu
PW_FILE=${PHT_DB_PASSWORD_FILE:-/run/secrets/db_password}
BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
DONE=$PGDATA/.pht-initialised
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups "$@"; }

install -d -o postgres -g postgres -m 0700 "$PGDATA"
if [ -s "$PGDATA/PG_VERSION" ] && [ ! -e "$DONE" ]; then
    echo "postgres: the first start stopped half-way ($PGDATA has a cluster but no role and" \
         "database for central); remove the volume and start again" >&2
    exit 1
fi
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    [ -s "$PW_FILE" ] || { echo "postgres: no password in $PW_FILE (the db_password secret)" >&2; exit 1; }
    PW=$(head -n 1 "$PW_FILE" | tr -d '\r\n')
    as_postgres "$BIN/initdb" -D "$PGDATA" --auth-local=peer --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >/dev/null
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    echo "host pht pht all scram-sha-256" >>"$PGDATA/pg_hba.conf"
    # make role and database over the local socket only, then stop again
    as_postgres "$BIN/pg_ctl" -D "$PGDATA" -o "-c listen_addresses=''" -w start >/dev/null
    as_postgres "$BIN/psql" -q -v ON_ERROR_STOP=1 -v "pw=$PW" -h /var/run/postgresql postgres <<'SQL'
CREATE ROLE pht LOGIN PASSWORD :'pw';
CREATE DATABASE pht OWNER pht;
SQL
    as_postgres "$BIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null
    touch "$DONE"
    echo "postgres: made a new cluster in $PGDATA"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups "$BIN/postgres" -D "$PGDATA"
