"""Which registry an image comes from, and whether this station's policy allows it.

Names are parsed with Docker's own reference grammar, so that the registry the policy
checks is the registry Docker Engine will contact: the first path component is the
registry (``host`` or ``host:port``; Docker's rule: it contains ``.`` or ``:`` or is
``localhost``); a name without one would be pulled from Docker Hub, and is refused here.

Normalisation is deliberately small and the same on both sides (policy entry and image):
the host is lower-cased (DNS names are case-insensitive) and an IPv6 address is written in
its compressed form. Nothing else is equated: ``localhost`` and ``127.0.0.1`` are different
registries, and so are ``host`` and ``host:443`` (Docker names them differently too, and
may reach a port-less name on 443 or, for an insecure registry, on 80). A port with a
leading zero, a scheme, user information, a tag, a trailing or doubled slash and any
character outside Docker's grammar are refused, never repaired.

A policy entry is ``host[:port]`` (every repository of that registry) or
``host[:port]/path`` (only repositories at or under that path, compared by whole path
components: ``127.0.0.1:5000/pht`` allows ``127.0.0.1:5000/pht/cohort``, not
``127.0.0.1:5000/phtx/cohort``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from trains.errors import PolicyRejected

# Docker's reference grammar (github.com/distribution/reference), ASCII only.
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = re.compile(rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*", re.ASCII)
_IPV6 = re.compile(r"\[[a-fA-F0-9:]+\]", re.ASCII)
_PORT = re.compile(r"[1-9][0-9]{0,4}", re.ASCII)
_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*", re.ASCII)
MAX_NAME = 255  # Docker's limit on a repository name


class BadReference(ValueError):
    """A registry, policy entry or repository name outside the grammar."""


@dataclass(frozen=True)
class Source:
    """A registry (normalised ``host[:port]``) and a repository path within it."""

    registry: str
    path: tuple[str, ...]

    def __str__(self) -> str:
        return "/".join((self.registry, *self.path))

    def within(self, allowed: Source) -> bool:
        """Same registry, and the path at or under the allowed one (whole components)."""
        return self.registry == allowed.registry and self.path[: len(allowed.path)] == allowed.path


def registry_of(text: str) -> str:
    """``host[:port]`` normalised: lower-case host, compressed IPv6, a canonical port."""
    host, colon, port = text.rpartition(":") if not text.endswith("]") else (text, "", "")
    if not colon:
        host = text
    elif not _PORT.fullmatch(port) or int(port) > 65535:
        raise BadReference(f"{text!r}: the port must be a number from 1 to 65535, as written")
    if _IPV6.fullmatch(host):
        try:
            host = f"[{ipaddress.IPv6Address(host[1:-1]).compressed}]"
        except ValueError:
            raise BadReference(f"{text!r}: not an IPv6 address") from None
    elif not _HOST.fullmatch(host):
        raise BadReference(f"{text!r} is not a registry host[:port] (no scheme, user or slash)")
    return host.lower() + (f":{port}" if colon else "")


def _path(parts: list[str], text: str) -> tuple[str, ...]:
    for part in parts:
        if not _PATH_COMPONENT.fullmatch(part):
            raise BadReference(
                f"{text!r}: {part!r} is not a repository path component (lower-case letters, "
                "digits and single separators; no tag, digest or empty part)"
            )
    return tuple(parts)


def parse_repository(repository: str) -> Source:
    """The registry and path of an image's repository (without tag or digest)."""
    if len(repository) > MAX_NAME:
        raise BadReference(f"a repository name longer than {MAX_NAME} characters")
    first, slash, rest = repository.partition("/")
    if not slash or not ("." in first or ":" in first or first == "localhost"):
        raise BadReference(
            f"{repository!r} names no registry, so Docker would pull it from Docker Hub; "
            "name the image as host:port/path"
        )
    return Source(registry_of(first), _path(rest.split("/"), repository))


def parse_allowed(entry: str) -> Source:
    """A policy entry ``host[:port]`` or ``host[:port]/path``."""
    first, slash, rest = entry.partition("/")
    return Source(registry_of(first), _path(rest.split("/"), entry) if slash else ())


def normalise_allowed(entries: list[str]) -> list[str]:
    """The policy list in normal form; raises ValueError (for pydantic) on a bad entry."""
    try:
        return [str(parse_allowed(e)) for e in entries]
    except BadReference as exc:
        raise ValueError(f"allowed_registries: {exc}") from None


def check_registry(repository: str, allowed: list[str]) -> Source:
    """Check 5: the image's repository lies in one allowed registry (and path)."""
    try:
        source = parse_repository(repository)
    except BadReference as exc:
        raise PolicyRejected(f"the image's repository is refused: {exc}") from None
    if not any(source.within(parse_allowed(entry)) for entry in allowed):
        raise PolicyRejected(
            f"registry {source.registry} (repository {source}) is not allowed here; "
            f"allowed: {allowed} (exact host:port: no default port, localhost is not "
            "127.0.0.1); ask the station admin to add it to policy.allowed_registries"
        )
    return source
