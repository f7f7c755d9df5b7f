"""What every `interp` command shares: the console, the one-line error, option parsing, the
`--json` switch and printing a table rendered by `interp.tables`."""

from __future__ import annotations

import errno
import functools
import math
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

console = Console()
ERRORS = (ValueError, ModuleNotFoundError, FileNotFoundError)  # bad input: one line, exit status 2
JSON_HELP = "Print the results on stdout as JSON (what results.json holds); everything else goes to stderr."


def fail(msg: str) -> None:
    # escaped: a message naming a TOML table ("has no [lr_select] table") is text, not rich markup
    console.print(f"[red]error:[/red] {escape(msg)}", soft_wrap=True)  # one line, whatever the terminal's width
    raise typer.Exit(2)


def call(fn, *args, **kwargs):
    """A library call (a config's constructor, a runner) whose bad input becomes the one-line error."""
    try:
        return fn(*args, **kwargs)
    except ERRORS as e:
        fail(str(e))
    except OSError as e:
        fail_if_disk_full(e)


def fail_if_disk_full(e: OSError) -> None:
    """A full disk is one line (`runs.DiskFull` names the file and the bytes it needed); any other
    OSError is raised again."""
    if e.errno not in (errno.ENOSPC, errno.EDQUOT):
        raise e
    fail(str(e))


def show(text: str) -> None:
    """Print a table rendered by `interp.tables` as it is (no markup, no re-wrapping)."""
    console.print(text.rstrip("\n"), markup=False, highlight=False, soft_wrap=True)


def say(message: str) -> None:
    """A runner's log line as it is: no markup (a cell id in brackets, "[f769baaf3b]", is text, not a
    style rich would drop) and one line however wide, so a log file holds one line per message."""
    console.print(message, markup=False, highlight=False, soft_wrap=True)


def note(message: str | None) -> None:
    if message:
        console.print(f"[yellow]note:[/yellow] {escape(message.removeprefix('note: '))}")


def done(out: Path, files: str) -> None:
    """The closing line: the wall time the artifact's manifest recorded, and where the artifact is."""
    from interp.runs import MANIFEST_FILE, read_json

    wall = read_json(out / MANIFEST_FILE).get("wall_time_s") if (out / MANIFEST_FILE).exists() else None
    console.print(("" if wall is None else f"wall time {wall:.1f} s; ") + f"artifacts: [bold]{out}[/bold] ({files})")


def path_str(path: Path | None) -> str | None:
    return None if path is None else str(path)


def parse_list(text: str, cast=float, field: str = "value") -> list:
    try:
        values = [cast(x) for x in text.split(",") if x.strip()]
    except ValueError:
        fail(f"{field}: {text!r} is not a comma-separated list of numbers")
    if not all(math.isfinite(v) for v in values):
        fail(f"{field}: {text!r} has a value that is not a finite number")
    return values


def finite(**values: float) -> None:
    """Refuse NaN and inf in float options (click parses 'nan' and 'inf'), naming the option."""
    for name, v in values.items():
        if v is not None and not math.isfinite(v):
            fail(f"--{name.replace('_', '-')}: {v} is not a finite number")


def dir_name(value: str, option: str) -> str:
    """A value that becomes part of a default output directory's name: one path component."""
    from interp.runs import safe_name

    try:
        return safe_name(value, option)
    except ValueError as e:
        fail(str(e) + "; or pass --out")


def json_output(command):
    """`--json` (the command's `json_out`): what the command returns, its results, on stdout as
    one JSON document; every other line (tables, stage logs, errors) on stderr."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        if not kwargs.get("json_out"):
            command(*args, **kwargs)
            return
        import contextlib
        import json
        import sys

        stdout = sys.stdout
        with contextlib.redirect_stdout(sys.stderr):
            res = command(*args, **kwargs)
        stdout.write(json.dumps(res, sort_keys=True, default=str) + "\n")
        stdout.flush()

    return wrapper
