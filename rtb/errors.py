"""Input errors that the CLI reports as one clear line each, with exit code 2."""

from __future__ import annotations


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
        return [f"{self.file}: {field}: {message}" if field else f"{self.file}: {message}"
                for field, message in self.problems]
