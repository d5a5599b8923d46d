"""Entry point of every train image: ``python3 -m trains.runtime``."""

import sys
from pathlib import Path

from trains.runtime.core import Context, TrainCodeError, run_train


def main() -> int:
    try:
        run_train(
            train_dir=Path("/opt/train"),
            input_dir=Path("/pht/input"),
            data_dir=Path("/pht/data"),
            output_dir=Path("/pht/output"),
            ctx=Context.from_env(),
        )
    except TrainCodeError as exc:
        print(f"pht runtime: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # how reference trains refuse, e.g. too few rows to share
        print(f"pht runtime: the train refused: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
