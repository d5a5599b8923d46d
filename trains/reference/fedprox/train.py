"""FedProx: FedAvg with a proximal term (Li et al., "Federated Optimization in Heterogeneous
Networks", MLSys 2020).

Exactly FedAvg (``fedavg_core.py``, a copy of the FedAvg train's) except for one thing:
each stop's local objective adds mu/2 * ||w - w_global||^2, which keeps a stop's model
near the global model it started from when the stations' data differ. mu = 0 is FedAvg.
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
