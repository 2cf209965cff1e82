"""The `rtb bidder` command: serve a strategy as an OpenRTB 2.6 bidder (rtb.bidder_server)."""

from __future__ import annotations

import errno
import importlib.util
from pathlib import Path

import typer

from rtb.cli_base import app, input_errors, out_console
from rtb.errors import InputError

SCENARIO_OPTION = typer.Option(None, "--scenario", help="a python strategy's module is looked"
                               " for in this scenario file's folder first (default: the current"
                               " directory)")


@app.command("bidder")
def bidder_command(
    strategy: str = typer.Option(
        ..., "--strategy", help="""the strategy every seat bids with, as in a scenario file,"""
        """ e.g. '{ kind = "value", shading = 0.7 }', or in the short form"""
        " KIND:NAME=VALUE,..., e.g. linear:base_cpm=2,avg_ctr=0.001; your own class:"
        " python:class=my_bidders:Shaded,value_per_conversion=90"),
    port: int = typer.Option(9000, "--port", help="TCP port (0: any free port, printed)"),
    host: str = typer.Option("127.0.0.1", "--host", help="address to listen on"),
    seed: int = typer.Option(0, "--seed", help="root seed of the seats' uniforms (randomised"
                             " strategies draw their own, so only deterministic ones bid as in"
                             " a simulation)"),
    scenario: Path | None = SCENARIO_OPTION,
) -> None:
    """Serve a strategy over OpenRTB 2.6 at POST /openrtb, one seat per campaign, until
    Ctrl-C (docs/openrtb.md)."""
    with input_errors():
        if not 0 <= port <= 65535:
            raise InputError.single("command line", "--port", f"{port} is not a port (0-65535)")
        if seed < 0:
            raise InputError.single("command line", "--seed", "must be >= 0")
        if scenario is not None and not scenario.is_file():
            raise InputError.single(str(scenario), "--scenario", "is not a file")
        if importlib.util.find_spec("aiohttp") is None:
            raise InputError.single("command line", "bidder", "needs aiohttp: pip install aiohttp")
        from rtb.bidder_server import OpenRtbBidder, serve
        from rtb.scenario import resolve_python_strategy
        from rtb.strategy_spec import parse_strategy, short_form

        spec = parse_strategy(strategy, "--strategy")
        base_dir = scenario.resolve().parent if scenario is not None else Path.cwd()
        if spec.kind == "python":  # imported and built once now, as a scenario's class is
            spec, problems = resolve_python_strategy(spec, base_dir, "--strategy")
            if problems:
                raise InputError("command line", problems)
        bidder = OpenRtbBidder(spec, seed=seed, base_dir=base_dir)

        def ready(url: str) -> None:
            out_console.print(f"rtb bidder: serving {short_form(spec)} on {url} (Ctrl-C stops)",
                              markup=False, highlight=False, soft_wrap=True)

        try:
            serve(bidder, host, port, on_ready=ready)
        except OSError as exc:  # the port is taken, or the host is not this machine's
            option = "--port" if exc.errno == errno.EADDRINUSE else "--host"
            raise InputError.single("command line", option, f"cannot listen on {host}:{port}:"
                                    f" {exc.strerror or exc}") from None
