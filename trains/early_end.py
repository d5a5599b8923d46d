"""When a route may end before its last hop: a train that has converged.

An iterative train (Newton rounds of logreg or Cox, FedAvg rounds) declares through the
runtime that further rounds change nothing (``converged(state, ctx)`` in train.py). Only
a hop that *ends its round* may end the route: the last stop of a sequential round, or the
aggregate hop of a parallel round, i.e. a hop whose output only later rounds read. That
hop's station then treats it as the release point: the train runs ``finalize``, the
output passes the release-point disclosure checks, and it is sealed to the researcher, not
to the next stop; its receipt says ``converged``. Central ends the route there, and the
researcher's ``verify_chain`` accepts a chain that stops early only on such a receipt,
signed by the station the manifest pins for that hop.

What it costs in secrecy: whether (and when) a route ended is chosen by the train's code
after it read data, so it tells central and the researcher at most log2(rounds) bits per
train, the round it ended in (docs/researcher.md counts it with the other channels).
"""

from __future__ import annotations

from trains.keys import PublicIdentity
from trains.manifest import Manifest


def early_end_refused(manifest: Manifest, index: int) -> str | None:
    """Why hop ``index`` may not end the route early, in words; None: it may."""
    hop = manifest.hop(index)
    if hop.is_last:
        return f"hop {index} is the last hop: the route ends there anyway"
    if any(later.round == hop.round for later in manifest.consumers(index)):
        return (
            f"hop {index} does not end round {hop.round} (hops of the same round read its "
            "output): only the last stop of a sequential round or the aggregate hop of a "
            "parallel round may end the route"
        )
    return None


def sealed_to_after(manifest: Manifest, index: int, converged: bool) -> list[PublicIdentity]:
    """The readers of hop ``index``'s output: the next stops, or the researcher after the
    last hop or a hop that ended the route (``converged``)."""
    return [manifest.researcher] if converged else manifest.recipients_after(index)
