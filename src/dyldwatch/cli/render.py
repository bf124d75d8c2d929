"""How the CLI shows rows: a rich table for people, JSON or CSV for machines (one copy, click/rich only)."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Sequence
from typing import Any

import click

FORMATS = click.Choice(["table", "json", "csv"])


def render(columns: Sequence[str], rows: Iterable[Sequence[Any]], fmt: str, *, title: str | None = None,
           out: Any = None) -> int:
    """Write rows as a rich table (people), a JSON array of objects (machines) or CSV; return the count."""
    out = out or sys.stdout
    count = 0
    if fmt == "json":
        out.write("[")
        for count, row in enumerate(rows, 1):
            out.write(("\n" if count == 1 else ",\n") + json.dumps(dict(zip(columns, row, strict=False)), default=str))
        out.write("\n]\n" if count else "]\n")
        return count
    if fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(columns)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
            count += 1
        return count
    from rich.console import Console
    from rich.table import Table as RichTable

    table = RichTable(title=title, show_lines=False, header_style="bold")
    for c in columns:
        table.add_column(c, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
        count += 1
    console = Console(file=out, width=None if out.isatty() else 200)
    console.print(table)
    console.print(f"{count} row{'s' if count != 1 else ''}", style="dim")
    return count
