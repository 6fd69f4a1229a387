"""Argument parsing shared by every tfsp command line (``python -m training``, ``export``, ``edge_demo`` ...).

Device-safe: argparse and difflib only. ``SuggestingParser`` rejects unknown options
with close-match suggestions before anything else is checked; ``suggest`` formats the
same hint for other choices (e.g. ``--quant int9``); the ``*_int`` and ``probability``
functions are argparse ``type=`` checks.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Sequence


def suggest(word: str, choices: Sequence[str]) -> str:
    """``" (did you mean X?)"`` for the closest of ``choices``, else ``""``."""
    match = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {match[0]}?)" if match else ""


class SuggestingParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` that rejects unknown options with close-match suggestions.

    Unknown options are reported before anything else, so ``--modle x`` says
    ``--modle (did you mean --model?)`` rather than "--model is required".
    Abbreviated options are unknown (``allow_abbrev`` defaults to False).
    """

    def __init__(self, *args, allow_abbrev: bool = False, **kwargs) -> None:
        super().__init__(*args, allow_abbrev=allow_abbrev, **kwargs)

    def parse_args(self, args=None, namespace=None):  # noqa: D102 (argparse signature)
        args = sys.argv[1:] if args is None else [str(a) for a in args]
        options = [option for action in self._actions for option in action.option_strings]
        words = args[: args.index("--")] if "--" in args else args
        unknown = [w for w in words if w.startswith("-") and not _is_number(w) and w.split("=")[0] not in options]
        if unknown:
            self.error("unrecognized arguments: " + ", ".join(
                f"{word}{suggest(word.split('=')[0], options)}" for word in unknown))
        return super().parse_args(args, namespace)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def probability(text: str) -> float:
    """argparse type: a float in [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {value}")
    return value
