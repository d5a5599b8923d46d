#!/bin/sh
# Start central in its container: migrate the database to the newest schema (once, before
# any worker starts), then run the uvicorn workers (central_workers.py) as the unprivileged
# user pht-central. The database password comes from the secret file (pht-central-here).
set -eu
pht-central-here db upgrade
. /usr/local/bin/pht-db-password
exec setpriv --reuid=10002 --regid=10002 --clear-groups python3 -m central_workers
