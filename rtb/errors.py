"""Input errors that the CLI reports as one clear line each, with exit code 2."""

from __future__ import annotations

import re

# C0 and C1 control characters (ESC among them), DEL, and the Unicode line and
# bidirectional-text controls: none of them may reach a terminal raw.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069\ufeff]")


def printable(text: object) -> str:
    """`text` with every control character written as an escape (\\x1b, \\n, \\u202e),
    so a name or key from a file can be shown on one line and change nothing on screen."""
    def escape(match: re.Match) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _CONTROL.sub(escape, str(text))


class InputError(Exception):
    """Bad user input: names the file, the field (path) and the problem.

    `problems` holds one (field, message) pair per problem so that a validator can
    report everything wrong at once.
    """

    def __init__(self, file: str, problems: list[tuple[str, str]]):
        self.file = file
        self.problems = problems
        super().__init__("\n".join(self.lines()))

    @classmethod
    def single(cls, file: str, field: str, message: str) -> "InputError":
        return cls(file, [(field, message)])

    def lines(self) -> list[str]:
        """One line per problem; control characters in any part are escaped."""
        return [printable(f"{self.file}: {field}: {message}" if field else f"{self.file}: {message}")
                for field, message in self.problems]


class StrategyError(ValueError):
    """A strategy written by a user misbehaved during a run (bids of the wrong shape,
    negative or infinite): names the class and the problem. The CLI reports it as one
    line with exit code 2, like an InputError."""
