"""What one run of a train's container came to, and the one sentence it may say outside.

``station.runner`` fills it; ``station.outcome`` and ``station.hop`` read it. A failure
leaves the station as a fixed category (``failure``), never the train's exit code or log.
"""

from __future__ import annotations

from dataclasses import dataclass

from trains.manifest import Resources
from trains.runtime.refusal import (
    CONTRACT_BROKEN,
    CONTRACT_EXIT,
    CONVERGED_EXIT,
    REFUSALS,
    refusal_of,
)


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    seconds: float
    timed_out: bool
    log: str  # stays at the station
    oom_killed: bool = False
    output_too_large: bool = False
    output_bytes: int = 0  # what the train wrote to /pht/output
    run_id: str = ""  # names the hop's containers and volume: pht-{hop,hold,output}-<run_id>
    # where the rest of the run's time went (station/timeline.py): before the container
    # started, copying its output out, removing what the run created
    sandbox_s: float = 0.0
    copy_out_s: float = 0.0
    cleanup_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.failure(None) is None

    def failure(self, resources: Resources | None) -> str | None:
        """What went wrong as one fixed sentence per category; None when the run succeeded.

        This sentence goes to central and the researcher, so it holds nothing the train
        chose beyond the category: never the exit code or the log (they stay here). The
        limits named are the manifest's, which the researcher set."""
        if self.timed_out:
            limit = f" of {resources.timeout_s}s" if resources else ""
            return f"the train exceeded its timeout{limit} and was killed"
        if self.oom_killed:
            limit = f" of {resources.memory_mb} MB" if resources else ""
            return (
                f"the train ran out of its memory{limit} and was killed; ask for more "
                "memory_mb in train.toml (files in /pht/output count against it)"
            )
        if self.output_too_large:
            limit = f" of {resources.max_output_mb} MB" if resources else ""
            return f"the train wrote more than its max_output_mb{limit}; nothing was kept"
        if self.refusal is not None:
            return f"the train refused ({self.refusal}): {REFUSALS[self.refusal]}"
        if self.exit_code == CONTRACT_EXIT:
            return CONTRACT_BROKEN
        if self.exit_code not in (0, CONVERGED_EXIT):
            return "the train failed (its code raised an error or exited with one)"
        return None

    @property
    def converged(self) -> bool:
        """The train succeeded and says the route may end here (trains/early_end.py)."""
        return self.exit_code == CONVERGED_EXIT and self.failure(None) is None

    @property
    def refusal(self) -> str | None:
        """The refusal code (trains/runtime/refusal.py) the train exited with, if any."""
        if self.timed_out or self.oom_killed or self.output_too_large:
            return None
        return refusal_of(self.exit_code)
