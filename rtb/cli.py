"""The `rtb` command: thin wrappers that parse options, call the library and render."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import typer
from rich.console import Console

from rtb.errors import InputError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="rtbsim: a programmatic ad-buying simulator.")
out = Console()
err = Console(stderr=True)


@contextmanager
def input_errors() -> Iterator[None]:
    """Turn InputError into one line per problem on stderr and exit code 2."""
    try:
        yield
    except InputError as exc:
        for line in exc.lines():
            err.print(line, markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=2) from None
    except KeyboardInterrupt:
        err.print("interrupted", markup=False)
        raise typer.Exit(code=130) from None


def main() -> None:  # pragma: no cover - console entry for `python -m rtb.cli`
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
