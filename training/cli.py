"""Shared argparse helpers of the training and evaluation CLIs."""

from __future__ import annotations

import argparse
import difflib

MAX_ARGUMENT_SUGGESTIONS = 1


class SuggestingParser(argparse.ArgumentParser):
    """An `ArgumentParser` that names close matches for unknown arguments."""

    def parse_args(self, args=None, namespace=None):  # noqa: D102 (argparse signature)
        parsed, unknown = self.parse_known_args(args, namespace)
        if unknown:
            options = [option for action in self._actions for option in action.option_strings]
            hints = []
            for arg in unknown:
                close = difflib.get_close_matches(arg.split("=")[0], options, n=MAX_ARGUMENT_SUGGESTIONS)
                hints.append(f"{arg} (did you mean {close[0]}?)" if close else arg)
            self.error(f"unrecognized arguments: {', '.join(hints)}")
        return parsed
