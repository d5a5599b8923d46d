# pht application image: central (uvicorn workers) and the station daemon, one image.
# Built by compose/central/build-images.sh on a context it assembles (site/ holds exactly
# the packages uv.lock pins, installed on the host from uv's cache; app/ the four Python
# packages of this repository). Nothing is pulled: the base is the locally built OS layer.
ARG BASE=pht-base-os:bookworm-1
FROM ${BASE}

# central runs as its own unprivileged user; the station runs as root (it needs the host's
# Docker socket, which is root-equivalent anyway: docs/deploy.md). Fixed ids, so volumes
# and backups keep their owner across rebuilds.
RUN groupadd --system --gid 10002 pht-central \
 && useradd --system --uid 10002 --gid 10002 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin pht-central \
 && install -d -o 10002 -g 10002 -m 0700 /var/lib/pht-central

COPY site /opt/pht/site
COPY app /opt/pht/app
COPY bin/ /usr/local/bin/

# The lock's packages (site) come after the app but before Debian's own dist-packages, so
# the versions uv.lock pins win over the OS layer's numpy and pandas.
ENV PYTHONPATH=/opt/pht/app:/opt/pht/site \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Bytecode compiled once here: without it every start compiles ~100 MB of sources, which on
# a busy machine takes longer than uvicorn gives a new worker to answer its first ping.
# (Packages' own test suites, 40% of the files, are left out.) Then a smoke test: every
# entry point imports.
RUN python3 -m compileall -q -j 0 -x "/tests/" /opt/pht/app /opt/pht/site \
 && pht-central --help >/dev/null && pht-station --help >/dev/null \
 && pht-network --help >/dev/null && python3 -c "import central.api, psycopg, uvloop"
