"""Central's configuration: typed, validated at start."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class CentralSettings(BaseModel):
    data_dir: Path
    database_url: str = ""
    host: str = "127.0.0.1"
    port: int = Field(8700, ge=0, le=65535)
    max_state_mb: int = Field(2048, ge=1, description="largest single sealed state")
    max_train_mb: int = Field(8192, ge=1, description="all blobs of one train together")
    lease_s: float = Field(
        60.0, gt=0, le=7 * 24 * 3600, description="a claimed hop's lease; heartbeats renew it"
    )
    max_attempts: int = Field(3, ge=1, description="claims of one hop before its train fails")
    lease_check_s: float = Field(5.0, gt=0, description="how often expired leases are swept")
    long_poll_max_s: float = Field(30.0, ge=0, description="longest ?wait= a station may ask")
    poll_recheck_s: float = Field(
        1.0,
        gt=0,
        description="long-poll DB check for hops queued by another central process, while "
        "no notification can be heard (SQLite; PostgreSQL while the listener reconnects)",
    )
    poll_fallback_s: float = Field(
        15.0,
        gt=0,
        description="the same check while PostgreSQL LISTEN/NOTIFY works: it only catches a "
        "lost notification",
    )
    retention_h: float = Field(
        168.0, ge=0, description="keep intermediate states of finished trains this long"
    )
    gc_interval_s: float = Field(3600.0, gt=0, description="how often retention runs in serve")
    token_cache_s: float = Field(
        1.0, ge=0, description="remember a token that worked this long (0: ask the DB each time)"
    )
    max_manifest_days: float = Field(
        30.0,
        gt=0,
        le=366,
        description="longest manifest lifetime (created_at to expires_at) accepted at submit",
    )
    max_header_bytes: int = Field(
        16 * 1024, ge=1024, le=1024 * 1024, description="all request headers together (431)"
    )
    max_header_count: int = Field(64, ge=8, le=1000, description="request headers (431)")
    log_json: bool = True

    def model_post_init(self, _context: object) -> None:
        if not self.database_url:
            self.database_url = f"sqlite:///{self.data_dir / 'central.db'}"
