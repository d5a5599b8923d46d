"""FedProx: FedAvg with a proximal term (Li et al., "Federated Optimization in Heterogeneous
Networks", MLSys 2020).

Exactly FedAvg (``trains/runtime/fedavg.py``, shared with the FedAvg train) except for one thing:
each stop's local objective adds mu/2 * ||w - w_global||^2, which keeps a stop's model
near the global model it started from when the stations' data differ. mu = 0 is FedAvg.
"""

from trains.runtime import fedavg as core  # shared by FedAvg and FedProx; in the base image


def proximal_gradient(mu):
    """Gradient of mu/2 * ||w - w_global||^2: the only change from FedAvg."""
    return lambda w, w_global: mu * (w - w_global)


def local(data, state, ctx):
    mu = float(ctx.params.get("mu", 0.1))
    return core.local(data, state, ctx, extra_gradient=proximal_gradient(mu))


def aggregate(states, ctx):
    return core.aggregate(states, ctx)


def finalize(state, ctx):
    return core.finalize(state, ctx, "fedprox", {"mu": float(ctx.params.get("mu", 0.1))})


def converged(state, ctx):
    """End the route at this aggregate hop once a round's averaging moved no weight by
    ``tol`` (with ``stop_early = true``); the scores published are then those of the model
    one averaging earlier, and say so."""
    return core.converged(state, ctx)
