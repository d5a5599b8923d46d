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
    (
        "km",
        "km",
        {"time_unit": 1},
        {"max_time": 2000, "levels": {"treatment": ["control", "new"]}},
        1,
        False,
    ),
    ("cox", "cox", {"time_unit": 1}, {"max_time": 2000}, 3, False),
    ("fedavg", "fedavg", {}, {}, 3, True),
]


def sites(train: str) -> list[pd.DataFrame]:
    return [pd.read_csv(p) for p in sorted((REFERENCE / train / "sample").glob("*.csv"))]


def seconds_per_hop(
    plain: Path, masked: Path, frames: list[pd.DataFrame], rounds: int, parallel: bool
) -> tuple[float, float, float]:
    """Median seconds per hop without and with secure (runs interleaved, so that a change
    in the machine's load hits both alike), and of that the stations' masking hooks."""
    times: dict[Path, list[float]] = {plain: [], masked: []}
    station: list[float] = []
    for _ in range(REPEATS):
        for folder in (plain, masked):
            started = time.perf_counter()
            run = run_secure_route(folder, frames, rounds, parallel)
            hops = len(run.manifest.hops())
            times[folder].append((time.perf_counter() - started) / hops)
            if folder == masked:
                station.append(run.station_seconds / hops)
    return (
        statistics.median(times[plain]),
        statistics.median(times[masked]),
        statistics.median(station),
    )


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
    start = container_start()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for train, data, common, extra, rounds, parallel in CASES:
            frames = sites(data)
            plain = secure_copy(REFERENCE / train, Path(tmp) / f"{train}-p", False, **common)
            masked = secure_copy(REFERENCE / train, Path(tmp) / f"{train}-s", **common, **extra)
            rows.append((train, *seconds_per_hop(plain, masked, frames, rounds, parallel)))
    print(
        f"{'train':8} {'hop plain':>10} {'hop secure':>11} {'overhead':>9} {'station':>8} "
        f"{'of in-process hop':>18} {'of real hop':>12}"
    )
    worst = 0.0
    for train, base, secure, station in rows:
        extra_s = secure - base
        real = base + start if start is not None else base
        worst = max(worst, extra_s / real)
        print(
            f"{train:8} {base * 1e3:8.1f}ms {secure * 1e3:9.1f}ms {extra_s * 1e3:7.1f}ms "
            f"{station * 1e3:6.2f}ms {extra_s / base * 100:17.1f}% {extra_s / real * 100:11.2f}%"
        )
    if start is not None:
        print(
            f"real hop = in-process hop + one container start measured here "
            f"({start * 1e3:.0f} ms; a real hop also pulls, seals and uploads)"
        )
    print(f"worst overhead {worst * 100:.2f}% of a hop (target < {TARGET * 100:.0f}%)")
    return 0 if worst < TARGET else 1


if __name__ == "__main__":
    raise SystemExit(main())
