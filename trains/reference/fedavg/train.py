"""FedAvg: federated averaging of a logistic model (McMahan et al., "Communication-Efficient
Learning of Deep Networks from Decentralized Data", AISTATS 2017).

Runs on parallel rounds: every stop trains the global model on its own rows for a few
epochs of mini-batch gradient descent, the aggregator stop averages the stops' weights,
weighted by their row counts. The shared machinery (standardisation round, training,
averaging, held-out scoring) is in ``fedavg_core.py``; see its docstring for the rounds.
"""

import importlib.util
from pathlib import Path


def _load_core():
    # the runtime loads train.py by path, so a helper module next to it is loaded by path too
    spec = importlib.util.spec_from_file_location(
        "fedavg_core", Path(__file__).with_name("fedavg_core.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


core = _load_core()


def local(data, state, ctx):
    return core.local(data, state, ctx)


def aggregate(states, ctx):
    return core.aggregate(states, ctx)


def finalize(state, ctx):
    return core.finalize(state, ctx, "fedavg", {})
