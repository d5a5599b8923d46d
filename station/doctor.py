"""``pht-station doctor``: is this station ready? Each check says what is wrong and the fix."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from station import datasources
from station.config import StationConfig
from trains.errors import PhtError
from trains.keys import Identity


@dataclass(frozen=True)
class Finding:
    check: str
    ok: bool
    detail: str  # on failure: what happened and what to do


def run_checks(config: StationConfig) -> list[Finding]:
    findings: list[Finding] = []

    def check(name: str, probe: Callable[[], str]) -> bool:
        try:
            findings.append(Finding(name, True, probe()))
            return True
        except PhtError as exc:
            findings.append(Finding(name, False, str(exc)))
            return False

    identity: list[Identity] = []

    def keys() -> str:
        me = Identity.load(config.keys_dir)
        if me.name != config.station.name:
            raise PhtError(
                f"the keys in {config.keys_dir} are for {me.name!r}, the config names "
                f"{config.station.name!r}; point station.keys_dir at this station's keys"
            )
        identity.append(me)
        return f"{config.keys_dir}: signing key {me.public.signing_fingerprint}"

    check("keys", keys)
    if check("docker", _docker):
        check("runtime", lambda: _runtime(config.station.runtime))
    if check("central", lambda: _central_up(config.station.central_url)):
        check("token", lambda: _token(config, identity[0] if identity else None))
    for name in sorted(config.datasets):
        check(f"dataset {name}", lambda name=name: datasources.check_readable(config, name))  # type: ignore[misc]
    check("state dir", lambda: _writable(config))
    return findings


def _docker() -> str:
    from station.runner import DockerRunner

    runner = DockerRunner()  # raises DockerUnavailable with its fix
    version = runner.client.version().get("Version", "?")
    return f"Docker Engine {version} reachable"


def _runtime(name: str) -> str:
    """The runtime trains run under (station.runtime), and that dockerd knows it."""
    from station.runner import DockerRunner

    runner = DockerRunner(runtime=name)  # raises DockerUnavailable with its fix
    registered = (runner.client.info().get("Runtimes") or {}).get(name) or {}
    how = " ".join([registered.get("path", name), *registered.get("runtimeArgs", [])])
    gvisor = " (gVisor)" if name == "runsc" else ""
    return f"trains run under {name}{gvisor}; dockerd starts it as: {how}"


def _central_up(url: str) -> str:
    try:
        response = httpx.get(f"{url.rstrip('/')}/healthz", timeout=5.0)
    except httpx.HTTPError as exc:
        raise PhtError(
            f"cannot reach central at {url} ({type(exc).__name__}); check station.central_url "
            "and that this machine may open outbound connections to it"
        ) from None
    if response.status_code != 200:
        raise PhtError(f"central at {url} answered {response.status_code} on /healthz")
    return f"{url} is up"


def _token(config: StationConfig, me: Identity | None) -> str:
    from central.client import CentralClient

    with CentralClient(config.station.central_url, config.token(), timeout=10.0) as central:
        try:
            who = central.me()
        except PhtError as exc:
            raise PhtError(
                f"central does not accept the token in {config.token_path} ({exc}); ask "
                "central's operator for this station's token"
            ) from None
        if who.role != "station" or who.name != config.station.name:
            raise PhtError(
                f"the token belongs to {who.role} {who.name!r}, not station "
                f"{config.station.name!r}; put this station's token in {config.token_path}"
            )
        if me is not None:
            registered = {s.name: s for s in central.stations()}.get(config.station.name)
            if registered != me.public:
                raise PhtError(
                    "central has other keys registered for this station than the ones in "
                    f"{config.keys_dir}; hand keys/public.json to central's operator again"
                )
    return f"accepted as station {config.station.name}; central has our keys"


def _writable(config: StationConfig) -> str:
    from station.queue import HopQueue

    try:
        queue = HopQueue(config.state_dir)
        probe = queue.root / ".doctor"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise PhtError(
            f"cannot write {config.state_dir} ({exc.strerror}); create it and give the "
            "station's user write access"
        ) from None
    return f"{config.state_dir} is writable"
