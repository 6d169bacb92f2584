"""What every command shares: the consoles, the options several commands take, and the
handling of input errors (one red line, exit 2).

Kept apart from the commands so that each command module takes these from one place without
importing the other commands.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from finescale.config import ConfigError
from finescale.console import progress_bar

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Override a setting: `section.key=value` (repeatable)."),
]
RankOption = Annotated[
    int | None,
    typer.Option(
        min=0,
        help="This process among those sharing the output (default: "
        "`$RANK` as torchrun sets it, else 0).",
    ),
]
WorldSizeOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Processes sharing the output, each writing every N-th block "
        "(default: `$WORLD_SIZE`, else 1).",
    ),
]


def user_errors(func: F) -> F:
    """Report errors caused by input (files, config, data) in one red line and exit 2; nothing
    else is caught."""
    from finescale.data.world.terrain import OrographyError

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ConfigError, OrographyError, FileNotFoundError, KeyError, ValueError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            # one line whatever a library's message looked like; brackets in it are not markup
            text = escape(" ".join(str(message).split()))
            err_console.print(f"[bold red]error:[/] {text}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


def stderr_progress() -> Progress:
    """A progress bar on stderr, leaving stdout to the results."""
    return progress_bar(err_console)


def note(text: str) -> None:
    """Print a note for the user on stderr."""
    err_console.print(text, highlight=False)
