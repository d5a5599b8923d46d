"""The in-container runtime: turns the container contract into a plain function call.

Imports only the standard library, numpy and pandas (``wald.py`` also scipy): it runs
inside the train image.
"""

from trains.runtime.core import Context, run_train

__all__ = ["Context", "run_train"]
