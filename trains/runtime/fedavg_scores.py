"""Held-out scores of a FedAvg/FedProx model as counts that add up over stops.

Each stop scores the global model it received on its held-out rows and sends counts, never
rows: the number of rows, correct predictions, the summed log-loss and per-class histograms
of the held-out logits; the aggregator sums them (``sum_evaluations``, or the masked sums of
a secure route) and turns them into accuracy, log-loss and a binned AUC (``scores``).
"""

from typing import Any

import numpy as np
import numpy.typing as npt

Array = npt.NDArray[Any]

# what a stop's evaluation holds: the names of its masked sums in a secure route
EVALUATION = ("n", "correct", "log_loss", "positive", "negative")


def evaluate(weights: Array, x: Array, y: Array, bins: int) -> dict[str, Any]:
    """Counts from which accuracy, log-loss and AUC are summed over stops."""
    w = np.asarray(weights, dtype=np.float64)
    z = w[0] + x @ w[1:]  # the logits, as fedavg.logits
    p = np.clip(1.0 / (1.0 + np.exp(-z)), 1e-15, 1 - 1e-15)
    edges = np.linspace(-8.0, 8.0, bins + 1)
    clipped = np.clip(z, -8.0, 8.0)
    return {
        "n": len(y),
        "correct": int(((z > 0) == (y == 1)).sum()),
        "log_loss": float(-(y * np.log(p) + (1 - y) * np.log(1 - p)).sum()),
        "positive": np.histogram(clipped[y == 1], edges)[0],
        "negative": np.histogram(clipped[y == 0], edges)[0],
    }


def sum_evaluations(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """The stops' evaluations added up (what the masked sums give in a secure route)."""
    return {
        "n": sum(e["n"] for e in parts),
        "correct": sum(e["correct"] for e in parts),
        "log_loss": sum(e["log_loss"] for e in parts),
        "positive": np.sum([np.asarray(e["positive"]) for e in parts], axis=0),
        "negative": np.sum([np.asarray(e["negative"]) for e in parts], axis=0),
    }


def binned_auc(positive: Array, negative: Array) -> float | None:
    """Mann-Whitney AUC from score histograms; pairs in one bin count as ties (half)."""
    positive, negative = np.asarray(positive, float), np.asarray(negative, float)
    below = np.concatenate([[0.0], np.cumsum(negative)[:-1]])
    pairs = positive.sum() * negative.sum()
    return float((positive * (below + 0.5 * negative)).sum() / pairs) if pairs else None


def scores(evaluation: dict[str, Any], round_: int) -> dict[str, Any]:
    """Accuracy, binned AUC and mean log-loss of one round's summed evaluation."""
    n = evaluation["n"]
    return {
        "round": round_,
        "n_test": n,
        "accuracy": evaluation["correct"] / n if n else None,
        "auc": binned_auc(evaluation["positive"], evaluation["negative"]),
        "log_loss": evaluation["log_loss"] / n if n else None,
    }
