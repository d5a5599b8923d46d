"""Blob retention: once a train has finished, its intermediate states are of no use to
anyone (each was sealed to a stop that has run). After the retention period they are
deleted; a done train keeps its final state for the researcher."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from central.blobs import BlobStore
from central.db import utcnow
from central.service import Service, output_blob


@dataclass(frozen=True)
class Pruned:
    trains: int
    bytes: int


def collect_garbage(service: Service, blobs: BlobStore, retention_h: float) -> Pruned:
    """Prune every train that finished more than ``retention_h`` hours ago."""
    cutoff = utcnow() - timedelta(hours=retention_h)
    trains = freed = 0
    for train_id, hop_count, done in service.trains_to_prune(cutoff):
        keep = {output_blob(hop_count - 1)} if done else set()
        freed += blobs.prune(train_id, keep)
        service.mark_pruned(train_id)
        trains += 1
    return Pruned(trains, freed)
