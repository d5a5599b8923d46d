"""The researcher's Python API (the CLI is a thin layer over it; notebooks use it directly).

r = Researcher.from_profile()
image = r.build(Path("mytrain"))
train_id = r.submit(Path("mytrain"), image, route=["hospital-a", "hospital-b"])
# or parallel rounds, joined at an aggregator stop:
train_id = r.submit(Path("mytrain"), image, ["a", "b", "c"], mode="parallel", aggregator="x")
r.watch(train_id)
result = r.result(train_id, Path("out"))
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from central.client import CentralClient
from train_builder.profile import Profile, resolve_profile
from train_builder.result import Result, fetch_result
from train_builder.trust import StationTrust
from trains.errors import KeyFileError, PhtError, ReceiptChainBroken, RouteMismatch
from trains.keys import Identity
from trains.manifest import (
    MANIFEST_TYPE,
    TRAIN_ID_PATTERN,
    Exposure,
    Image,
    Manifest,
    Route,
    Stop,
    expiry_from_now,
)
from trains.receipt import RECEIPT_TYPE, HopPredicate, HopReceipt
from trains.signing import open_envelope, sign, unverified_payload
from trains.train_spec import load_train_spec

_WHOLE_ID = re.compile(TRAIN_ID_PATTERN)
FINISHED = ("done", "failed", "cancelled")


class Researcher:
    def __init__(
        self,
        identity: Identity,
        central: CentralClient,
        registry: str | None = None,
        trust: StationTrust | None = None,
    ) -> None:
        """``trust``: how station keys are authenticated (a pinned network root, or the
        known-stations file); by default the known stations beside the default profile."""
        self.identity = identity
        self.central = central
        self.registry = registry
        self.trust = trust or resolve_profile().trust()

    @classmethod
    def from_profile(cls, profile: Profile | None = None, **flags: str | None) -> Researcher:
        """The researcher the profile describes (see ``train_builder.profile``).

        ``flags`` override it like the CLI's flags: central_url, token_file, keys_dir,
        registry."""
        profile = profile or resolve_profile(flags)
        url = profile.require_central_url()
        token = profile.token()
        keys = profile.keys_path()
        if not (keys / "signing.key").exists():
            raise KeyFileError(
                f"no researcher keys in {keys} (keys_dir from {profile.keys_dir.source}): run "
                "'pht-train keys new --name NAME', or point keys_dir at your keys "
                "('pht-train profile set keys_dir DIR')"
            )
        return cls(
            Identity.load(keys),
            CentralClient(url, token),
            profile.registry_value(),
            profile.trust(),
        )

    def close(self) -> None:
        self.central.close()

    def __enter__(self) -> Researcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def build(self, folder: Path, push: bool = True, wheelhouse: Path | None = None) -> Image:
        """Build the train image and push it to the profile's registry; return its digest."""
        from train_builder.image import build_image, push_image, write_image_file

        if not self.registry:
            raise PhtError("no registry: set it with 'pht-train profile set registry HOST:PORT'")
        _, tag = build_image(folder, self.registry, wheelhouse=wheelhouse)
        image = push_image(tag)
        write_image_file(folder, image)
        return image

    def route_stops(self, names: list[str]) -> list[Stop]:
        """Each station's keys as central serves them, to be pinned in the manifest, but
        only once authenticated without trusting central: enrolled by the pinned network
        root, or confirmed by you before (``self.trust``); else NotEndorsed says why."""
        return self.trust.stops(self.central.station_directory(), names)

    def make_manifest(
        self,
        folder: Path,
        image: Image,
        stops: list[Stop],
        rounds: int = 1,
        days: float = 7,
        aggregator: Stop | None = None,
        on_refusal: Literal["fail", "skip"] = "fail",
        allow_exposed_partials: Sequence[Exposure] = (),
    ) -> Manifest:
        """The manifest to sign; with an ``aggregator`` the route runs parallel rounds;
        ``on_refusal="skip"`` lets a refusing stop but the last pass the state on instead
        of failing;
        ``allow_exposed_partials`` allows what a parallel route otherwise refuses (see
        :class:`trains.manifest.Route`)."""
        spec = load_train_spec(folder)
        created, expires = expiry_from_now(days)
        try:
            route = Route(
                mode="sequential" if aggregator is None else "parallel",
                rounds=rounds,
                stops=stops,
                aggregator=aggregator,
                on_refusal=on_refusal,
                allow_exposed_partials=list(allow_exposed_partials),
            )
        except ValidationError as exc:
            problems = [e["msg"].removeprefix("Value error, ") for e in exc.errors()]
            raise RouteMismatch("the route is refused: " + "; ".join(problems)) from None
        return Manifest(
            name=spec.train.name,
            version=spec.train.version,
            researcher=self.identity.public,
            image=image,
            route=route,
            datasets=spec.datasets,
            outputs=spec.outputs,
            resources=spec.resources,
            created_at=created,
            expires_at=expires,
        )

    def submit_manifest(self, manifest: Manifest) -> str:
        """Sign and submit; the manifest pins every key, so central cannot swap one."""
        return self.central.submit(sign(manifest, MANIFEST_TYPE, self.identity.signing))

    def submit(
        self,
        folder: Path,
        image: Image,
        route: list[str],
        rounds: int = 1,
        days: float = 7,
        mode: Literal["sequential", "parallel"] = "sequential",
        aggregator: str | None = None,
        on_refusal: Literal["fail", "skip"] = "fail",
        allow_exposed_partials: Sequence[Exposure] = (),
    ) -> str:
        """Sign and submit. ``mode="parallel"`` fans each round out to every stop of
        ``route`` and joins it at the ``aggregator`` station (required then).
        ``on_refusal="skip"`` (sequential routes): a station that refuses its hop passes
        the state on unchanged, and the train goes on without it (not the last stop: it
        runs ``finalize`` and disclosure control)."""
        if (mode == "parallel") != (aggregator is not None):
            raise RouteMismatch(
                "a parallel route needs an aggregator station, and only a parallel route has "
                "one: pass mode='parallel' with aggregator='STATION'"
            )
        joins = self.route_stops([aggregator])[0] if aggregator is not None else None
        manifest = self.make_manifest(
            folder,
            image,
            self.route_stops(route),
            rounds,
            days,
            joins,
            on_refusal,
            allow_exposed_partials,
        )
        return self.submit_manifest(manifest)

    def status(self, train_id: str) -> dict[str, Any]:
        return self.central.status(train_id)

    def timeline(self, train_id: str) -> tuple[dict[str, Any], dict[int, HopPredicate]]:
        """The train's status and, for every finished hop, its receipt's predicate, each
        signed by the station the manifest (signed by you) pins for that hop: where each
        hop's time went, in the station's own signed words."""
        status = self.central.status(train_id)
        manifest = open_envelope(
            self.central.manifest(train_id),
            MANIFEST_TYPE,
            self.identity.public,
            Manifest,
            "manifest (as central holds it)",
        )
        signed: dict[int, HopPredicate] = {}
        for envelope in self.central.receipts(train_id):
            claimed = unverified_payload(envelope, HopReceipt).predicate.hop
            if not 0 <= claimed < len(manifest.hops()):
                raise ReceiptChainBroken(f"a receipt claims hop {claimed}, outside this route")
            stop = manifest.hop(claimed).stop.station
            what = f"receipt of hop {claimed}"
            receipt = open_envelope(envelope, RECEIPT_TYPE, stop, HopReceipt, what)
            signed[receipt.predicate.hop] = receipt.predicate
        return status, signed

    def list(self) -> list[dict[str, Any]]:
        """Your trains, oldest first: train_id, name, status, created_at."""
        return self.central.list_trains()

    def cancel(self, train_id: str) -> str:
        """Stop a train; hops not yet run never run. Returns the new status."""
        return self.central.cancel(train_id)

    def resolve(self, train_id: str) -> str:
        """A train's id from what a person types: the whole id, ``last`` (your most
        recently submitted train), or the start of an id that no other train of yours
        shares (as ``pht-train list`` and ``pht-station pending`` print them)."""
        if _WHOLE_ID.fullmatch(train_id):
            return train_id
        trains = self.list()
        if train_id == "last":
            if not trains:
                raise PhtError("you have submitted no train yet")
            return str(trains[-1]["train_id"])
        prefix = train_id.lower()
        matches = [str(t["train_id"]) for t in trains if str(t["train_id"]).startswith(prefix)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise PhtError(
                f"no train of yours has an id starting with {train_id!r}; "
                "'pht-train list' shows them"
            )
        raise PhtError(
            f"{train_id!r} starts {len(matches)} of your trains' ids: "
            + ", ".join(matches[:10])
            + "; give more of the id"
        )

    def follow(
        self, train_id: str, timeout_s: float = 3600, poll_s: float = 0.5
    ) -> Iterator[dict[str, Any]]:
        """Yield the train's status each time it changes, until the train finishes."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] | None = None
        while True:
            status = self.central.status(train_id)
            if status != last:
                yield status
                last = status
            if status["status"] in FINISHED:
                return
            if time.monotonic() > deadline:
                raise PhtError(
                    f"train {train_id} still {status['status']} after {timeout_s:.0f}s; "
                    f"it keeps travelling: 'pht-train watch {train_id}' to look again"
                )
            time.sleep(poll_s)

    def watch(
        self,
        train_id: str,
        on_change: Callable[[dict[str, Any]], None] | None = None,
        timeout_s: float = 3600,
        poll_s: float = 0.5,
    ) -> dict[str, Any]:
        """Wait until the train finishes, calling ``on_change`` with every new status."""
        status: dict[str, Any] = {}
        for status in self.follow(train_id, timeout_s, poll_s):
            if on_change is not None:
                on_change(status)
        return status

    def wait(self, train_id: str, timeout_s: float = 3600, poll_s: float = 0.5) -> dict[str, Any]:
        """The train's final status (done, failed or cancelled)."""
        return self.watch(train_id, None, timeout_s, poll_s)

    def result(self, train_id: str, out_dir: Path) -> Result:
        """Download, verify the whole receipt chain (every hop of the plan) and that the
        final state is sealed to exactly you, then open it into ``out_dir``: a new (or
        empty) folder that appears only once every file is out, readable by you only
        (:func:`train_builder.result.fetch_result`)."""
        return fetch_result(self.central, self.identity, train_id, out_dir)
