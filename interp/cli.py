"""The `interp` command line: thin wrappers over the library (each command builds a config and
calls one library function)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Subliminal-learning interpretability toolkit.")
console = Console()


def _fail(msg: str) -> None:
    console.print(f"[red]error:[/red] {msg}")
    raise typer.Exit(2)


@app.command()
def models() -> None:
    """List the models interp knows, with their install status."""
    from interp.models import list_models

    table = Table("name", "status", "description", "detail")
    for row in list_models():
        table.add_row(row["name"], row["status"], row["description"], row["detail"])
    console.print(table)


if __name__ == "__main__":
    app()
