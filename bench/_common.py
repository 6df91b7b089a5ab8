"""Shared helpers for the scripts in ``bench/``: machine description, percentiles, table, JSON.

Import it from a benchmark script as ``import _common`` (the script's own directory is first on
``sys.path`` when it is run as ``python bench/<script>.py``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import sqlite3
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from supervit.rpc import EVENT_LOOP_ENV, EVENT_LOOPS, event_loop_factory  # the daemons' own

__all__ = [
    "EVENT_LOOP_ENV",
    "RPCS",
    "add_event_loop_argument",
    "add_tree_arguments",
    "machine_info",
    "percentile",
    "print_table",
    "rpcs_of",
    "server_event_loop",
    "summarize_ns",
    "use_event_loop",
    "write_json",
]


def machine_info() -> dict[str, Any]:
    """Where the figures were measured: enough to tell two runs' machines apart."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "sqlite_version": sqlite3.sqlite_version,
        "libraries": _library_versions(),
        "server_event_loop": server_event_loop(),
    }


def _library_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {}
    for name in ("supervit", "grpcio", "protobuf", "psutil", "uvloop"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def _event_loops(text: str) -> list[str]:
    loops = text.split(",")
    for loop in loops:
        if loop not in EVENT_LOOPS:
            raise argparse.ArgumentTypeError(f"{loop!r} is not one of {', '.join(EVENT_LOOPS)}")
    return loops


def add_event_loop_argument(parser: argparse.ArgumentParser, *, several: bool = False) -> None:
    """``--event-loop``: the loop every server process runs on, supervit's and the bare floor alike
    (set in the environment the servers inherit; default: the environment's, else auto).

    With ``several``, a comma-separated list (``args.event_loop`` is then a list).
    """
    default = os.environ.get(EVENT_LOOP_ENV, "auto")
    parser.add_argument(
        "--event-loop",
        type=_event_loops if several else str,
        choices=None if several else EVENT_LOOPS,
        default=[default] if several else default,
        help="server event loop"
        + ("(s), comma-separated, e.g. asyncio,uvloop" if several else "")
        + "; auto = uvloop when installed (supervit and bare servers always share one)",
    )


def use_event_loop(args: argparse.Namespace) -> str:
    """Make ``args.event_loop`` the servers' loop; returns the loop they will run on."""
    os.environ[EVENT_LOOP_ENV] = args.event_loop
    return server_event_loop()


def server_event_loop(choice: str | None = None) -> str:
    """The loop a server started now (with ``choice``, default the environment's) runs on:
    ``asyncio`` or ``uvloop``."""
    chosen = choice if choice is not None else os.environ.get(EVENT_LOOP_ENV, "auto")
    return "asyncio" if event_loop_factory(chosen) is None else "uvloop"


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values, linearly interpolated."""
    if not sorted_values:
        raise ValueError("no values")
    rank = (len(sorted_values) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


def summarize_ns(samples_ns: Iterable[int]) -> dict[str, float | int]:
    """p50/p99/mean/min/max in microseconds of per-call timings given in nanoseconds."""
    values = sorted(v / 1000 for v in samples_ns)
    return {
        "samples": len(values),
        "p50_us": round(percentile(values, 50), 2),
        "p99_us": round(percentile(values, 99), 2),
        "mean_us": round(sum(values) / len(values), 2),
        "min_us": round(values[0], 2),
        "max_us": round(values[-1], 2),
    }


def print_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *, file: Any = None) -> None:
    """Print rows as an aligned plain-text table (numbers right-aligned)."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out = file if file is not None else sys.stdout
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)), file=out)
    print("  ".join("-" * w for w in widths), file=out)
    for row in cells:
        print("  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)), file=out)


def write_json(path: Path | str, benchmark: str, parameters: Mapping[str, Any], results: Any) -> None:
    """Write ``{benchmark, recorded_at, machine, parameters, results}`` as indented JSON."""
    payload = {
        "benchmark": benchmark,
        "recorded_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "parameters": dict(parameters),
        "results": results,
    }
    Path(path).write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.2f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


RPCS = ("get_realm", "create_realm", "report")
"""The RPCs the tools that compare supervit trees (side_by_side.py, instructions.py) can load."""


def _checkout(text: str) -> Path:
    path = Path(text).resolve()
    if not (path / "src" / "supervit" / "__init__.py").is_file():
        raise argparse.ArgumentTypeError(f"{text}: not a supervit checkout (no src/supervit/__init__.py)")
    return path


def add_tree_arguments(parser: argparse.ArgumentParser, *, nargs: str, default_rpc: str) -> None:
    """The ``trees`` (supervit checkouts) and ``--rpc`` arguments; see :func:`rpcs_of`."""
    parser.add_argument("trees", nargs=nargs, type=_checkout, help="supervit checkouts (the first is the baseline)")
    parser.add_argument("--rpc", default=default_rpc, help=f"one or more of {', '.join(RPCS)}, comma-separated")


def rpcs_of(parser: argparse.ArgumentParser, args: argparse.Namespace) -> list[str]:
    """``--rpc``'s RPCs; an unknown one is an argument error naming it."""
    rpcs: list[str] = args.rpc.split(",")
    unknown = [r for r in rpcs if r not in RPCS]
    if unknown:
        parser.error(f"unknown --rpc {', '.join(unknown)} (choose from {', '.join(RPCS)})")
    return rpcs
