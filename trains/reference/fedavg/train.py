"""FedAvg: federated averaging of a logistic model (McMahan et al., "Communication-Efficient
Learning of Deep Networks from Decentralized Data", AISTATS 2017).

Runs on parallel rounds: every stop trains the global model on its own rows for a few
epochs of mini-batch gradient descent, the aggregator stop averages the stops' weights,
weighted by their row counts. The shared machinery (standardisation round, training,
averaging, held-out scoring) is in ``trains/runtime/fedavg.py``; see its docstring for the rounds.
"""

from trains.runtime import fedavg as core  # shared by FedAvg and FedProx; in the base image


def local(data, state, ctx):
    return core.local(data, state, ctx)


def aggregate(states, ctx):
    return core.aggregate(states, ctx)


def finalize(state, ctx):
    return core.finalize(state, ctx, "fedavg", {})


def converged(state, ctx):
    """End the route at this aggregate hop once a round's averaging moved no weight by
    ``tol`` (with ``stop_early = true``); the scores published are then those of the model
    one averaging earlier, and say so."""
    return core.converged(state, ctx)
