"""How ``pht-train test`` runs one hop: in-process through ``trains.runtime`` (the code a
station's container runs), or in a real container through the station's own runner and
sandbox, on an image built here and never pushed. Either way a train that raises shows
only the frames of its own ``train.py``.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import traceback
from pathlib import Path

from trains.errors import TrainFailed
from trains.runtime.core import Context, Ran, TrainCodeError, run_train
from trains.runtime.refusal import CONVERGED_EXIT
from trains.train_spec import CODE_FILE, TrainSpec, load_train_spec

CONTAINER_UID = 10001
LOCAL_REGISTRY = "pht-local"  # images built for local tests are tagged, never pushed


def local_tag(folder: Path, spec: TrainSpec) -> str:
    """``pht-local/pht/<name>:<version>-<hash>``, the hash over the folder's resolved path,
    its files and this process: on a shared Docker daemon, two folders (or two runs) with
    the same train name and version never run each other's code."""
    digest = hashlib.sha256(f"{folder.resolve()}\0{os.getpid()}\0".encode())
    for path in sorted(folder.iterdir()):
        if path.is_file():
            digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
            digest.update(path.read_bytes())
    return f"{LOCAL_REGISTRY}/pht/{spec.train.name}:{spec.train.version}-{digest.hexdigest()[:16]}"


class InProcessHop:
    """The runtime called in this process: what the container would run, in seconds."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def run(
        self, ctx: Context, input_dir: Path, data_dir: Path, output_dir: Path, spec: TrainSpec
    ) -> Ran:
        """Run the hop: the state the train returned (at the release hop, more than leaves
        when it publishes typed quantities), and whether it ended the route here."""
        try:
            return run_train(self.folder, input_dir, data_dir, output_dir, ctx)
        except TrainCodeError as exc:
            raise TrainFailed(f"{_where(ctx)}: {exc}") from None
        except Exception as exc:  # the train's own code raised: show its traceback
            text = "".join(traceback.format_exception(exc))
            trace = train_traceback(text)
            raise TrainFailed(f"{_where(ctx)}: the train raised:\n{trace}") from None


class DockerHop:
    """The station's runner and sandbox, on an image built here and never pushed."""

    def __init__(self, folder: Path, base: str | None, wheelhouse: Path | None) -> None:
        from station.runner import DockerRunner
        from train_builder.image import DEFAULT_BASE, build_image

        spec = load_train_spec(folder)
        self.tag = local_tag(folder, spec)
        build_image(folder, LOCAL_REGISTRY, base or DEFAULT_BASE, wheelhouse, tag=self.tag)
        self.runner = DockerRunner()

    def close(self) -> None:
        """Remove the image: it was this run's alone, and the daemon may be shared."""
        import docker
        import docker.errors

        with contextlib.suppress(docker.errors.DockerException):
            docker.from_env().images.remove(self.tag, noprune=False)

    def run(
        self, ctx: Context, input_dir: Path, data_dir: Path, output_dir: Path, spec: TrainSpec
    ) -> Ran:
        """Run the hop in a container: no state comes back but the files it wrote, and
        whether it ended the route here (exit 80)."""
        _open_for_container(input_dir.parent, output_dir)
        result = self.runner.run(
            self.tag,
            input_dir=input_dir,
            data_dir=data_dir,
            output_dir=output_dir,
            env={
                "PHT_MODE": ctx.mode,
                "PHT_STATION": ctx.station,
                "PHT_ROUND": str(ctx.round),
                "PHT_HOP": str(ctx.hop),
                "PHT_LAST_HOP": "1" if ctx.is_last else "0",
                "PHT_STOP": str(ctx.stop),
                "PHT_STOPS": str(ctx.stops),
                "PHT_ROUNDS": str(ctx.rounds),
                "PHT_MAY_END": "1" if ctx.may_end else "0",
                "PHT_ROUTE": "parallel" if ctx.parallel else "sequential",
            },
            resources=spec.resources,
        )
        if result.timed_out:
            raise TrainFailed(
                f"{_where(ctx)}: the train exceeded its timeout of {spec.resources.timeout_s}s "
                "(resources.timeout_s in train.toml)"
            )
        if result.exit_code not in (0, CONVERGED_EXIT):
            raise TrainFailed(
                f"{_where(ctx)}: the container exited with code {result.exit_code}:\n"
                f"{train_traceback(result.log)}"
            )
        return Ran(None, result.converged)


def _open_for_container(work: Path, output_dir: Path) -> None:
    """As a station does: the container's user reads everything, writes only the output."""
    for path in work.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    work.chmod(0o755)
    try:
        os.chown(output_dir, CONTAINER_UID, CONTAINER_UID)
        output_dir.chmod(0o700)
    except PermissionError:  # not root: let the container's user write anyway
        output_dir.chmod(0o777)


def _where(ctx: Context) -> str:
    return f"hop {ctx.hop} at {ctx.station} (round {ctx.round})"


def train_traceback(text: str) -> str:
    """The last traceback in ``text``, keeping only frames in the train's own train.py."""
    lines = text.rstrip().splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (")]
    if not starts:
        return "\n".join(f"  {line}" for line in lines[-20:])
    body = lines[starts[-1] + 1 :]
    kept: list[str] = []
    keep_frame = False
    for line in body:
        if line.startswith("  File "):
            keep_frame = f'/{CODE_FILE}"' in line or line.startswith(f'  File "{CODE_FILE}"')
            if keep_frame:
                kept.append('  File "train.py"' + line.split('"', 2)[2])
        elif line.startswith("    "):
            if keep_frame:
                kept.append(line)
        else:
            kept.append(line)  # the exception itself
    return "\n".join(["Traceback (train.py frames only):", *kept])
