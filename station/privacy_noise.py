"""The noise of a DP release, drawn by OpenDP (docs/station-admin.md, "Differential privacy").

Each function adds noise to one vector whose sensitivity the caller states, calibrated so
that OpenDP's own privacy map of the measurement is within the share of the budget it was
given; it is checked, not assumed. Counts get *integer* noise (discrete Laplace or discrete
Gaussian, sampled exactly from the OS's cryptographic randomness), so no floating-point
artefact of the noise can reveal the exact count (Mironov 2012's attack on textbook
floating-point Laplace). Sums get OpenDP's floating-point mechanisms, which account for
rounding in their privacy map.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

# not opendp.prelude: it imports OpenDP's scikit-learn extras (seconds of start-up)
from opendp.domains import atom_domain, vector_domain
from opendp.measurements import make_gaussian, make_laplace
from opendp.metrics import l1_distance, l2_distance
from opendp.mod import enable_features

# the mechanisms used here are marked "contrib" by OpenDP (docs/station-admin.md says what
# that means); enabling it is a process-wide switch of the library, nothing else
enable_features("contrib")

Mechanism = Literal["laplace", "gaussian"]
# the scale is widened by this factor so that OpenDP's map, which rounds up, stays within
# the share; a share it still exceeds is an error, never a silent overspend
_MARGIN = 1 + 1e-9


@dataclass(frozen=True)
class Share:
    """One component's part of a release's budget: ε for Laplace, rho (zCDP) for Gaussian."""

    mechanism: Mechanism
    amount: float


def gaussian_rho(epsilon: float, delta: float) -> float:
    """The zCDP rho whose (ε, δ)-DP conversion (Bun & Steinke 2016, Prop. 1.3:
    ε = rho + 2·sqrt(rho·ln(1/δ))) is exactly ``epsilon`` at ``delta``."""
    log_term = math.log(1 / delta)
    return (math.sqrt(log_term + epsilon) - math.sqrt(log_term)) ** 2


def split(mechanism: Mechanism, epsilon: float, delta: float, parts: int) -> Share:
    """A release's budget split evenly over ``parts`` noised components (sequential
    composition: pure ε adds up under Laplace, rho adds up under Gaussian)."""
    if mechanism == "laplace":
        return Share("laplace", epsilon / parts)
    return Share("gaussian", gaussian_rho(epsilon, delta) / parts)


def noisy_counts(values: list[int], share: Share) -> list[int]:
    """Integer noise on a vector of counts to which one record adds at most one, in one
    cell (L1 = L2 sensitivity 1: a frequency table's cells, a curve's events)."""
    if not values:
        return []
    metric = l1_distance(T="i64") if share.mechanism == "laplace" else l2_distance(T="i64")
    space = vector_domain(atom_domain(T="i64")), metric
    measurement = _calibrated(space, 1, 1.0, share)
    return [int(v) for v in measurement([int(v) for v in values])]


def noisy_sums(values: list[float], sensitivity: float, share: Share) -> list[float]:
    """Noise on finite floats; ``sensitivity`` is the L1 (Laplace) or L2 (Gaussian) change
    one record can make to the whole vector."""
    if not values:
        return []
    metric = l1_distance(T="f64") if share.mechanism == "laplace" else l2_distance(T="f64")
    space = vector_domain(atom_domain(T="f64", nan=False)), metric
    measurement = _calibrated(space, sensitivity, sensitivity, share)
    return [float(v) for v in measurement([float(v) for v in values])]


def scale_for(share: Share, l_sensitivity: float) -> float:
    """The noise scale that spends ``share`` on a vector of this L1 or L2 sensitivity."""
    if share.mechanism == "laplace":
        return l_sensitivity / share.amount * _MARGIN
    return l_sensitivity / math.sqrt(2 * share.amount) * _MARGIN


def _calibrated(space: Any, d_in: float, l_sensitivity: float, share: Share) -> Any:
    """The measurement at the scale for ``share``, its privacy map checked by OpenDP."""
    make = make_laplace if share.mechanism == "laplace" else make_gaussian
    measurement: Any = make(space[0], space[1], scale=scale_for(share, l_sensitivity))
    spent = float(measurement.map(d_in))
    if spent > share.amount:
        raise RuntimeError(
            f"OpenDP's privacy map says {spent} > the share {share.amount}; nothing released"
        )
    return measurement
