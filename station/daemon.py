"""The polling loop: ask central for the next hop, process it, repeat. Outbound HTTP only."""

from __future__ import annotations

import logging
import time

from central.client import CentralClient
from station.config import StationConfig
from station.hop import process_offer
from station.runner import DockerRunner
from trains.errors import CentralError
from trains.keys import Identity

log = logging.getLogger("pht.station")


def run_daemon(config: StationConfig, once: bool = False, max_backoff_s: float = 30.0) -> None:
    identity = Identity.load(config.keys_dir)
    runner = DockerRunner()
    backoff = config.station.poll_interval_s
    with CentralClient(config.station.central_url, config.token()) as central:
        log.info("station %s polling %s", identity.name, config.station.central_url)
        while True:
            try:
                offer = central.next_hop()
                backoff = config.station.poll_interval_s
            except CentralError as exc:
                log.warning("%s; retrying in %.0fs", exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, max_backoff_s)
                continue
            if offer is not None:
                status = process_offer(offer, config, identity, central, runner)
                log.info("train %s is now %s", offer.train_id, status)
                continue
            if once:
                return
            time.sleep(config.station.poll_interval_s)
