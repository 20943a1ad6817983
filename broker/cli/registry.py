"""How a CLI module declares its commands: each command's name, help, arguments and handler in one place.

A module makes `commands = Commands()` and decorates each handler:

    @commands("audit holds", "list covert holds, live and released", arg("--json", action="store_true"))
    def cmd_audit_holds(args, settings) -> int: ...

broker.cli.main builds the parser from every module's `commands` and dispatches on the command's name.
A two-word name ("audit holds") is a subcommand of a group; the group's help is in GROUPS.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from broker.config import Settings

Handler = Callable[[argparse.Namespace, "Settings"], int]

# every command group (`interchange GROUP SUBCOMMAND`) and its help
GROUPS: dict[str, str] = {
    "rules": "explain and test sharing decisions",
    "audit": "the audit log",
    "topology": "RabbitMQ topology",
    "agreements": "information-sharing agreements",
    "corrections": "corrections and retractions",
    "dlq": "dead-letter triage: list, show (redacted), replay, purge (audited)",
    "report": "reports for managers and chief officers",
    "security": "partner isolation and credentials",
    "contract": "the partner contract: view schemas and AsyncAPI",
}


@dataclass(frozen=True)
class Arg:
    """One command-line argument: the flags and options of argparse's add_argument."""

    flags: tuple[str, ...]
    options: dict[str, Any]

    def add_to(self, parser: Any) -> None:
        """Add this argument to a parser or argument group."""
        parser.add_argument(*self.flags, **self.options)


@dataclass(frozen=True)
class ArgGroup:
    """Arguments shown together in --help under a title."""

    title: str
    args: tuple[Arg, ...]

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add the titled group and its arguments to a parser."""
        group = parser.add_argument_group(self.title)
        for a in self.args:
            a.add_to(group)


def arg(*flags: str, **options: Any) -> Arg:
    """An argument, written as argparse's add_argument would take it."""
    return Arg(flags, options)


def group(title: str, *args: Arg) -> ArgGroup:
    """Arguments under a title in --help."""
    return ArgGroup(title, args)


@dataclass(frozen=True)
class Command:
    """One command: its name ("run" or "GROUP SUBCOMMAND"), help, arguments and handler."""

    name: str
    help: str
    args: tuple[Arg | ArgGroup, ...]
    handler: Handler


class Commands:
    """The commands one CLI module declares, in the order declared."""

    def __init__(self) -> None:
        self.all: list[Command] = []

    def __call__(self, name: str, help: str, *args: Arg | ArgGroup) -> Callable[[Handler], Handler]:
        """Decorator: declare the decorated handler as command `name` with its help and arguments."""
        words = name.split(" ")
        if len(words) > 2 or (len(words) == 2 and words[0] not in GROUPS):
            raise ValueError(f"command {name!r}: a group must be declared in broker.cli.registry.GROUPS")

        def register(handler: Handler) -> Handler:
            self.all.append(Command(name, help, args, handler))
            return handler

        return register


def build_subcommands(sub: Any, commands: list[Command]) -> None:
    """Add every command (and the groups they belong to) to the top-level subparsers."""
    groups: dict[str, Any] = {}
    for command in commands:
        word, _, child = command.name.partition(" ")
        if child:
            if word not in groups:
                groups[word] = sub.add_parser(word, help=GROUPS[word]).add_subparsers(
                    dest=f"{word}_command", required=True, metavar="SUBCOMMAND"
                )
            parser = groups[word].add_parser(child, help=command.help)
        else:
            parser = sub.add_parser(word, help=command.help)
        for a in command.args:
            a.add_to(parser)


def by_name(commands: list[Command]) -> dict[str, Handler]:
    """Each command's handler by its name; a name declared twice is a programming error."""
    handlers: dict[str, Handler] = {}
    for command in commands:
        if command.name in handlers:
            raise ValueError(f"command {command.name!r} is declared twice")
        handlers[command.name] = command.handler
    return handlers
