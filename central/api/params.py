"""Path parameters of the API, bounded as ``central.messages`` bounds them: an identifier
out of range is answered 422 before any route or database sees it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path

from trains.manifest import MAX_HOPS, TRAIN_ID_PATTERN

TrainIdPath = Annotated[str, Path(pattern=TRAIN_ID_PATTERN, max_length=36, description="a UUID")]
HopPath = Annotated[int, Path(ge=0, lt=MAX_HOPS, description="the hop's index on the route")]
PositionPath = Annotated[int, Path(ge=0, lt=MAX_HOPS, description="0-based, as in the offer")]
