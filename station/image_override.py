"""The station, not the image, decides how a hop's container runs.

An image's configuration (``ENTRYPOINT``, ``CMD``, ``ENV``, ``VOLUME``, ``HEALTHCHECK``,
``USER``, ``WORKDIR``, ``STOPSIGNAL``, ``LABEL``) is written by the researcher, so it is
untrusted. Every container of a hop is created with the settings below, which replace the
image's; docs/sandbox.md lists each field, what the station does with it, and the test in
tests/test_hostile_images.py that builds an image with a hostile value for it.

* entrypoint and command: the train runtime ``python3 -m trains.runtime`` (the base
  image's contract), no arguments: the image's ``CMD`` is dropped with its entrypoint;
* environment: Docker cannot unset a variable the image declares, so each one is set to
  the empty string; then the station's own runtime variables and the hop's ``PHT_*``;
* ``VOLUME``: refused before anything is created (``station.pull.image_config``);
* healthcheck: none; working directory ``/pht``; user 10001:10001; stop signal SIGKILL;
* labels: the station's ``pht``, ``pht.runner``, ``pht.run`` override the image's, and
  the station finds its containers by these only.
"""

from __future__ import annotations

from typing import Any

RUNTIME = ["python3", "-m", "trains.runtime"]
WORKDIR = "/pht"
STOP_SIGNAL = "SIGKILL"
# what the runtime needs to start, the same for every image (pht-base sets the same)
RUNTIME_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "PYTHONPATH": "/opt/pht:/opt/pht-deps",  # the runtime, and a train's own wheels
    # a shipped __pycache__ or .pyc in the train's folder is refused by the runtime before
    # it imports anything (trains.runtime.core.load_train_module), so what runs is the
    # source the admin reviewed. No PYTHONPYCACHEPREFIX: it would also hide the base
    # image's own compiled numpy and pandas, and every hop would compile them (seconds).
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTHONUNBUFFERED": "1",
    "PYTHONNOUSERSITE": "1",
    "LANG": "C.UTF-8",
}


def environment(image_env: list[str], hop_env: dict[str, str]) -> dict[str, str]:
    """Every variable the image declares emptied, then the runtime's, then the hop's
    (``station.hop`` hands only ``PHT_*`` variables)."""
    return {**dict.fromkeys(image_env, ""), **RUNTIME_ENV, **hop_env}


def overrides(image_env: list[str], hop_env: dict[str, str]) -> dict[str, Any]:
    """The container settings that replace the image's (entrypoint set by the caller)."""
    return {
        "environment": environment(image_env, hop_env),
        "working_dir": WORKDIR,
        "healthcheck": {"test": ["NONE"]},
        "stop_signal": STOP_SIGNAL,
    }
