"""How a train refuses to contribute: one code from a fixed vocabulary, as its exit code.

A train (or the runtime's own helpers, e.g. ``design.require_min_rows``) raises
:class:`Refusal` with a code; the runtime exits with that code's reserved exit code, and the
station maps it back to the fixed sentence below, which is all the researcher and central
see. The text a train adds stays in the container's log, at the station.

Why a fixed vocabulary and not the train's own words: the train has read patient data, and
anything it chooses that leaves the station outside the sealed state bypasses disclosure
control. A free-text reason would carry any value; an exit code would carry 8 bits. The
station therefore reports a failure only as a category (see ``station.runner.RunResult``),
and a refusal only as one of these codes: choosing among ``N`` codes (or plain failure)
tells the outside at most log2(N + 1) bits per hop (with the other failure categories,
docs/researcher.md counts them all, a few bits per hop). Sentences mention the train's
parameters by name only: the researcher set them and knows their values.

Standard library only: it runs inside the train image, and the station imports it too.
"""

from __future__ import annotations

from typing import Final

# exit codes 80-89 are reserved: 80 success, and the route may end here (the train has
# converged, trains/early_end.py), 81.. a refusal (its place in this table), 89 a broken
# contract; everything else non-zero is a plain failure
EXIT_BASE: Final = 80
CONVERGED_EXIT: Final = EXIT_BASE
REFUSALS: Final[dict[str, str]] = {
    "too_few_rows": (
        "the station has fewer complete rows than the train's min_rows parameter; "
        "it refuses to contribute"
    ),
    "missing_column": (
        "the station's dataset lacks a column the train's [parameters] name; "
        "check the column names the station publishes"
    ),
    "invalid_values": (
        "a column the train's [parameters] name holds values the train cannot use "
        "(e.g. an outcome that is not 0/1)"
    ),
    "missing_dataset": "the station holds no data file for a dataset the train reads",
}
EXIT_CODES: Final[dict[str, int]] = {code: EXIT_BASE + 1 + i for i, code in enumerate(REFUSALS)}
# not a refusal but a failure with its own sentence: train.py, train.toml or what its
# functions return do not follow the runtime's contract (a bug to find with pht-train test)
CONTRACT_EXIT: Final = EXIT_BASE + 9
CONTRACT_BROKEN: Final = (
    "the train does not follow the runtime's contract (train.py, train.toml or what its "
    "functions return); run it with 'pht-train test' to see why"
)


class Refusal(ValueError):
    """Raise to refuse, e.g. ``raise Refusal("too_few_rows", f"{n} rows")``.

    ``detail`` goes to the container's log only (it stays at the station). A ValueError,
    so code that caught the plain ValueError reference trains used to raise still does.
    """

    def __init__(self, code: str, detail: str = "") -> None:
        if code not in REFUSALS:
            raise ValueError(f"unknown refusal code {code!r}; use one of {sorted(REFUSALS)}")
        super().__init__(detail or REFUSALS[code])
        self.code = code
        self.detail = detail

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.code]


def refusal_of(exit_code: int) -> str | None:
    """The refusal code a container's exit code stands for; None if it stands for none."""
    return next((code for code, value in EXIT_CODES.items() if value == exit_code), None)
