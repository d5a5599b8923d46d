"""A hop's inputs: downloaded from central and opened as they arrive, checked before use.

The sealed bytes are never written to a file: they stream from central
(:meth:`central.client.CentralClient.open_input`) through the header check (sealed to
exactly the readers the manifest names, before anything is opened), the per-chunk AEAD
and the bounded unpacker (:func:`trains.statepipe.open_and_unpack_from`) into the input
folder, while their sha256 is taken. The AEAD only says the bytes were sealed to this
station; what says they are the state the chain names is that digest, known only once the
last byte arrived. So nothing unpacked is used before it is checked (the container starts
later), and when it does not match, the unpacked files are removed and the hop fails as
it did when the file was downloaded first. A state that fails to open is received to its
end all the same (within ``max_download_bytes``), so that a state changed in transit is
still named by its digest, not by where the cipher noticed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import BinaryIO, TypeVar, cast

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from central.client import CentralClient
from central.messages import HopOffer
from station.delivery import is_transient
from station.verify import (
    VerifiedHop,
    check_input_digest,
    check_opened_input,
    empty_state_changed,
)
from trains.chunkreader import ChunkReader, DownloadTooLarge
from trains.errors import CentralError, HopDeferred, PhtError, SealError, StateInvalid
from trains.keys import Identity, PublicIdentity
from trains.receipt import readers_of
from trains.sealing import Opened, output_context
from trains.statepipe import open_and_unpack_from

T = TypeVar("T")


def fetch_inputs(
    offer: HopOffer,
    verified: VerifiedHop,
    me: Identity,
    central: CentralClient,
    work: Path,
    input_dir: Path,
    max_bytes: int,
) -> None:
    """Download, check and open every input: a local hop's one state into ``input_dir``, an
    aggregate hop's partial states into ``input_dir/<k>`` in the order of its inputs.
    (``work``: the hop's folder; nothing is written there any more, kept for callers.)"""
    train_id, index = verified.manifest.train_id, verified.hop.index
    aggregate = verified.hop.kind == "aggregate"
    for position, source in enumerate(offer.inputs):
        target = input_dir / str(position) if aggregate else input_dir
        refused: list[PhtError] = []
        consume = partial(
            _open,
            target=target,
            max_bytes=max_bytes,
            key=me.sealing,
            context=output_context(train_id, source.hop),
            readers=readers_of(verified.manifest, source.hop),
            refused=refused,
        )
        # the digest of every byte central sent, taken while they streamed
        digest, opened = central_call(
            partial(central.open_input, train_id, index, position, consume)
        )
        try:
            check_input_digest(digest, source.digest)  # 9. the chain's word, before any use
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
        if refused or opened is None:
            raise refused[0]
        # 10. the state the receipts commit to, every skip on the way passing it on as read
        must_be_empty = check_opened_input(offer, verified.manifest, position, opened[0].plain)
        if must_be_empty and opened[1]:
            raise empty_state_changed(source.hop)


def _open(
    incoming: ChunkReader,
    target: Path,
    max_bytes: int,
    key: X25519PrivateKey,
    context: str,
    readers: Sequence[PublicIdentity],
    refused: list[PhtError],
) -> tuple[Opened, list[str]] | None:
    """Open and unpack the state as it arrives (a failure removes ``target``). A state
    refused for what it holds is received to its end and its refusal kept in ``refused``
    (raised once the digest is checked); a download past its bound ends at once."""
    try:
        return open_and_unpack_from(
            cast(BinaryIO, incoming),
            target,
            max_bytes,
            key,
            context,
            False,
            (readers, "the input state"),
        )
    except (SealError, StateInvalid) as exc:
        if isinstance(exc, DownloadTooLarge):
            raise
        incoming.drain()
        refused.append(exc)
        return None


def central_call(call: Callable[[], T]) -> T:
    """``call`` to central; a transient failure defers the hop (it is offered again)."""
    try:
        return call()
    except CentralError as exc:
        if is_transient(exc):
            raise HopDeferred(str(exc)) from None
        raise
