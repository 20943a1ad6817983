"""What every CLI module shares, below `broker.cli.main`: exit codes and how a command group is added."""

from __future__ import annotations

from typing import Any

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CONFIG, EXIT_TRANSPORT = 0, 1, 2, 3, 4


def new_group(sub: Any, name: str, help_text: str) -> Any:
    """A command group (`interchange NAME SUBCOMMAND`); its handlers register as "NAME SUBCOMMAND"."""
    return sub.add_parser(name, help=help_text).add_subparsers(
        dest=f"{name}_command", required=True, metavar="SUBCOMMAND"
    )
