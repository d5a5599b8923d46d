"""The console served by the station daemon, on a thread of its own (uvicorn)."""

from __future__ import annotations

import logging
import threading

import uvicorn

from station.config import StationConfig

log = logging.getLogger("pht.station")


class ConsoleServer(threading.Thread):
    """uvicorn serving ``station.console.app`` until :meth:`stop`; a failure to start
    (the port taken) is logged and leaves the daemon running without a console."""

    def __init__(self, config: StationConfig) -> None:
        super().__init__(name="pht-console", daemon=True)
        from station.console.app import create_app

        settings = config.console
        assert settings is not None
        self.url = f"http://{settings.host}:{settings.port}/"
        self.server = uvicorn.Server(
            uvicorn.Config(
                create_app(config),
                host=settings.host,
                port=settings.port,
                log_level="warning",
                access_log=False,  # URLs name hop ids only, but the admin's log stays short
            )
        )

    def run(self) -> None:
        log.info("console at %s", self.url)
        try:
            self.server.run()
        except (OSError, SystemExit) as exc:
            log.error("the console could not start at %s (%s)", self.url, exc)

    def stop(self) -> None:
        self.server.should_exit = True
        self.join(timeout=5)


def start_console(config: StationConfig) -> ConsoleServer | None:
    """Serve the console if station.toml has a ``[console]`` table."""
    if config.console is None:
        return None
    server = ConsoleServer(config)
    server.start()
    return server
