"""The in-container runtime: turns the container contract into a plain function call.

Imports only the standard library, numpy and pandas (``wald.py`` also scipy): it runs
inside the train image.
"""

from trains.runtime.core import Context, run_train
from trains.runtime.refusal import Refusal

__all__ = ["Context", "Refusal", "run_train"]
