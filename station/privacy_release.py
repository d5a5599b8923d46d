"""DP on ``published.json`` at the release point: read it, noise it, charge, rewrite it.

``station.release`` calls :func:`privatize_published` after the disclosure rules have
rewritten ``published.json`` (validated, with its ``release`` section); the notes of what
was noised are appended to ``release.suppressed`` beside the rules' notes, and the privacy
parameters recorded in ``release.privacy``, so the researcher reads both in one place
(``pht-train result``). The file is read with a size bound and validated strictly again:
this process trusts no file a train could have touched.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from station.audit import AUDIT_FILE, AuditLog
from station.config import PrivacyPolicy, StationConfig
from station.privacy import NoiseNote, apply_dp, refuse_train_nulls
from station.privacy_ledger import BudgetLedger
from station.verify import VerifiedHop
from trains.errors import StateInvalid
from trains.published import (
    PUBLISHED_FILE,
    InvalidPublished,
    Quantity,
    SurvivalCurve,
    to_document,
)
from trains.published_read import from_document

MAX_PUBLISHED_BYTES = 64 * 1024 * 1024  # far above MAX_QUANTITIES x MAX_CELLS of numbers


def privatize_at_release(
    output_dir: Path, verified: VerifiedHop, config: StationConfig, release: bool
) -> int:
    """DP for the output of a hop, if it is the release point (``release``: the last hop,
    or where a converged train ended the route) and the policy requires it; how many
    quantities were noised. The ledger and audit log are the station's own."""
    privacy = config.policy.privacy
    if privacy.mode == "off" or not release:
        return 0
    state = config.state_dir
    notes = privatize_published(
        output_dir,
        privacy,
        BudgetLedger(state, AuditLog(state / AUDIT_FILE)),
        signer=verified.manifest.researcher.signing_fingerprint,
        datasets=list(verified.manifest.datasets),
        train_id=verified.manifest.train_id,
        hop=verified.hop.index,
    )
    return sum(1 for n in notes if n.action == "noised")


def privatize_published(
    output_dir: Path,
    privacy: PrivacyPolicy,
    ledger: BudgetLedger,
    *,
    signer: str,
    datasets: list[str],
    train_id: str,
    hop: int,
) -> list[NoiseNote]:
    """Noise ``output_dir/published.json`` in place (``station.privacy.apply_dp``); raises
    BudgetExceeded or NotCovered (nothing charged, the file untouched) when it may not be
    released. An output without ``published.json`` has nothing DP could cover: unchanged."""
    path = output_dir / PUBLISHED_FILE
    if privacy.mode == "off" or not path.is_file():
        return []
    document = _read(path)
    release = document.pop("release", None)
    try:
        quantities = [_with_quantile_levels(q, document) for q in from_document(document)]
    except InvalidPublished as exc:
        raise StateInvalid(f"{PUBLISHED_FILE} is not valid: {exc}") from None
    # the rules' notes tell their nulls from the train's (a train's null is refused)
    refuse_train_nulls(quantities, release.get("suppressed") if isinstance(release, dict) else [])
    noisy, notes = apply_dp(
        quantities, privacy, ledger, signer, datasets, train_id=train_id, hop=hop
    )
    out = to_document(noisy)
    section: dict[str, Any] = release if isinstance(release, dict) else {}
    section.setdefault("suppressed", [])
    section["suppressed"] = [*section["suppressed"], *(n.to_dict() for n in notes)]
    section["privacy"] = {
        "mechanism": privacy.mechanism,
        "epsilon_per_release": privacy.epsilon_per_release,
        "delta": privacy.delta,
        "neighbouring": "add or remove one record",
    }
    out["release"] = section
    tmp = path.with_name(f".{path.name}.dp")
    tmp.write_text(json.dumps(out, sort_keys=True) + "\n")
    tmp.replace(path)
    return notes


def _with_quantile_levels(quantity: Quantity, document: dict[str, Any]) -> Quantity:
    """A curve with the quantile levels the release rules filled in (from_document drops a
    curve's survival, median and quantiles: they are recomputed from the noisy curve)."""
    if not isinstance(quantity, SurvivalCurve):
        return quantity
    for raw in document["quantities"]:
        if raw.get("name") == quantity.name and isinstance(raw.get("quantiles"), dict):
            levels = [key for key in raw["quantiles"] if isinstance(key, str)][:100]
            return replace(quantity, quantiles=dict.fromkeys(levels))
    return quantity


def _read(path: Path) -> dict[str, Any]:
    if path.stat().st_size > MAX_PUBLISHED_BYTES:
        raise StateInvalid(f"{PUBLISHED_FILE} is larger than {MAX_PUBLISHED_BYTES} bytes")
    try:
        document = json.loads(path.read_bytes())
    except (ValueError, RecursionError):
        raise StateInvalid(f"{PUBLISHED_FILE} is not readable JSON") from None
    if not isinstance(document, dict):
        raise StateInvalid(f'{PUBLISHED_FILE} must be {{"format": 1, "quantities": [...]}}')
    return document
