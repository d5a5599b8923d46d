"""Central under several uvicorn worker processes, configured from the environment.

``pht-central serve`` runs one process; uvicorn's workers need the app as an import path
and re-create it in each worker, so this module offers the factory ``app`` and a ``main``
that starts uvicorn with it. Every worker is an ordinary central process on the same
PostgreSQL database and data directory (docs/central-operations.md, "Several central
processes"). The compose stack runs it; see docs/deploy.md.

Environment: PHT_CENTRAL_DATA_DIR (blobs), PHT_CENTRAL_DATABASE_URL, PHT_CENTRAL_WORKERS
(default 2), PHT_CENTRAL_PORT (8700, inside the container).
"""

from __future__ import annotations

import os
from pathlib import Path

import uvicorn
from fastapi import FastAPI

from central import logs
from central.api import create_app
from central.server import BoundedHttpTools
from central.settings import CentralSettings


def settings() -> CentralSettings:
    """Central's settings from the PHT_CENTRAL_* variables; the defaults of ``serve``."""
    return CentralSettings(
        data_dir=Path(os.environ.get("PHT_CENTRAL_DATA_DIR", "/var/lib/pht-central")),
        database_url=os.environ.get("PHT_CENTRAL_DATABASE_URL", ""),
        host="0.0.0.0",  # inside the container; compose publishes it on 127.0.0.1 only
        port=int(os.environ.get("PHT_CENTRAL_PORT", "8700")),
    )


def app() -> FastAPI:
    """The factory each worker calls: logs as JSON lines, then the app."""
    logs.configure(json_lines=True)
    return create_app(settings())


def main() -> None:
    s = settings()
    uvicorn.run(
        "central_workers:app",
        factory=True,
        host=s.host,
        port=s.port,
        workers=int(os.environ.get("PHT_CENTRAL_WORKERS", "2")),
        log_level="warning",
        access_log=False,  # central logs every request itself, as JSON with its request id
        timeout_keep_alive=75,
        # a new worker imports and migrates before its first answer; on a busy host that
        # takes longer than uvicorn's 5 s, and the supervisor would kill it and start again
        timeout_worker_healthcheck=60,
        # the module-level class (16 KiB of headers, serve's default): workers are started
        # by pickling uvicorn's config, and bounded_http() makes a class pickle cannot name
        http=BoundedHttpTools,
    )


if __name__ == "__main__":
    main()
