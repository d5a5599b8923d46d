"""Wald inference for the maximum-likelihood reference trains (logistic and Cox regression):
standard errors from the inverse of the information matrix, z statistics, two-sided normal
p-values and confidence intervals, the table statsmodels reports for a pooled fit.

Part of the runtime, so every base image carries it. Unlike the rest of the runtime it
needs scipy (for the normal distribution); both base images carry scipy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats


def wald_table(
    names: list[str], beta: Any, information: Any, conf_level: float
) -> dict[str, dict[str, Any]]:
    """Per coefficient name: ``estimate``, ``se``, ``z``, ``p`` and the ``conf_level``
    interval ``ci_low`` .. ``ci_high``, on the scale of ``beta``. A train adds its own
    columns (an odds or hazard ratio) to each row."""
    beta = np.asarray(beta)
    se = np.sqrt(np.diag(np.linalg.inv(np.asarray(information))))
    z = beta / se
    q = stats.norm.ppf(0.5 + conf_level / 2)
    return {
        name: {
            "estimate": beta[i],
            "se": se[i],
            "z": z[i],
            "p": 2 * stats.norm.sf(abs(z[i])),
            "ci_low": beta[i] - q * se[i],
            "ci_high": beta[i] + q * se[i],
        }
        for i, name in enumerate(names)
    }
