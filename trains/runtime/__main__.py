"""Entry point of every train image: ``python3 -m trains.runtime``.

Exit codes: 0 success; 80 success, and the train has converged: the route may end here
(``trains/early_end.py``); 81-84 a refusal from the fixed vocabulary of ``refusal.py``, 89 a
train that breaks the runtime's contract; anything else a failure, reported only as
"failed" (the category is all the station tells anyone about a failed hop). What is
printed here stays in the container's log, at the station.
"""

import sys
from pathlib import Path

from trains.runtime.core import Context, TrainCodeError, run_train
from trains.runtime.refusal import CONTRACT_EXIT, CONVERGED_EXIT, Refusal


def main() -> int:
    try:
        ran = run_train(
            train_dir=Path("/opt/train"),
            input_dir=Path("/pht/input"),
            data_dir=Path("/pht/data"),
            output_dir=Path("/pht/output"),
            ctx=Context.from_env(),
        )
    except Refusal as exc:
        print(f"pht runtime: the train refused ({exc.code}): {exc}", file=sys.stderr)
        return exc.exit_code
    except TrainCodeError as exc:
        print(f"pht runtime: {exc}", file=sys.stderr)
        return CONTRACT_EXIT
    except ValueError as exc:  # any other refusal in the train's own words: plain failure
        print(f"pht runtime: the train failed: {exc}", file=sys.stderr)
        return 2
    return CONVERGED_EXIT if ran.converged else 0


if __name__ == "__main__":
    sys.exit(main())
