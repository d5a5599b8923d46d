"""Cost of secure = true per hop: the same reference train, same data, same route, with and
without masking, measured in the same run.

Each hop runs in-process as a station runs it minus Docker, central and sealing
(``tests/secure_route.py``: the station's ``unmask_input``, ``trains.runtime.run_train``,
the station's ``mask_output``, with one real X25519 key per station). Without secure the
station hooks return at once, so the difference is all of secure aggregation's cost: the
runtime's fixed-point encoding and ring sums, the secure file, and the stations' X25519
agreements, HKDF and SHAKE-256 masks. The baseline leaves out what a real hop also spends
(starting a container, pulling, sealing, uploading: seconds), so the ratio printed is an
upper bound of the overhead on a real hop; a container start is measured too, for scale.

Run from the repository root: ``python3 benchmarks/secure_masking.py`` (target < 10 %).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.secure_route import run_secure_route, secure_copy

REFERENCE = Path(__file__).resolve().parents[1] / "trains" / "reference"
TARGET = 0.10
REPEATS = 5
LEVELS = {
    "sex": ["F", "M"],
    "smoker": ["no", "yes"],
    "diagnosis": ["none", "hypertension", "copd", "t2_diabetes", "sarcoidosis"],
}
CASES: list[tuple[str, str, dict[str, Any], dict[str, Any], int, bool]] = [
    ("cohort", "cohort", {}, {"levels": LEVELS}, 1, False),
    ("linreg", "linreg", {}, {}, 1, False),
    ("logreg", "logreg", {}, {}, 3, False),
    ("km", "km", {"time_unit": 1}, {"max_time": 2000}, 1, False),
    ("cox", "cox", {"time_unit": 1}, {"max_time": 2000}, 3, False),
    ("fedavg", "fedavg", {}, {}, 3, True),
]


def sites(train: str) -> list[pd.DataFrame]:
    return [pd.read_csv(p) for p in sorted((REFERENCE / train / "sample").glob("*.csv"))]


def seconds_per_hop(
    plain: Path, masked: Path, frames: list[pd.DataFrame], rounds: int, parallel: bool
) -> tuple[float, float]:
    """Median seconds per hop without and with secure, runs interleaved so that a change
    in the machine's load hits both alike."""
    times: dict[Path, list[float]] = {plain: [], masked: []}
    for _ in range(REPEATS):
        for folder in (plain, masked):
            started = time.perf_counter()
            run = run_secure_route(folder, frames, rounds, parallel)
            times[folder].append((time.perf_counter() - started) / len(run.manifest.hops()))
    return statistics.median(times[plain]), statistics.median(times[masked])


def container_start() -> float | None:
    """One `true` in the base image, for the scale of a real hop (None without Docker)."""
    try:
        import docker

        client = docker.from_env()
        started = time.perf_counter()
        client.containers.run(
            "pht-base:latest", [], entrypoint="true", remove=True, network_disabled=True
        )
        return time.perf_counter() - started
    except Exception:  # no Docker here: the in-process ratio stands alone
        return None


def main() -> int:
    print(f"{'train':8} {'hop plain':>11} {'hop secure':>11} {'overhead':>9} {'of hop':>8}")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for train, data, common, extra, rounds, parallel in CASES:
            frames = sites(data)
            plain = secure_copy(REFERENCE / train, Path(tmp) / f"{train}-p", False, **common)
            masked = secure_copy(REFERENCE / train, Path(tmp) / f"{train}-s", **common, **extra)
            base, secure = seconds_per_hop(plain, masked, frames, rounds, parallel)
            ratio = (secure - base) / base
            worst = max(worst, ratio)
            print(
                f"{train:8} {base * 1000:9.1f}ms {secure * 1000:9.1f}ms "
                f"{(secure - base) * 1000:7.2f}ms {ratio * 100:7.1f}%"
            )
    start = container_start()
    if start is not None:
        print(f"a container start alone (docker run pht-base true): {start * 1000:.0f} ms")
    print(f"worst overhead {worst * 100:.1f}% of an in-process hop (target < {TARGET * 100:.0f}%)")
    return 0 if worst < TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
