"""Central's configuration: typed, validated at start."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class CentralSettings(BaseModel):
    data_dir: Path
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=0, le=65535)
    max_state_mb: int = Field(2048, ge=1)

    def model_post_init(self, _context: object) -> None:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'central.db'}"
