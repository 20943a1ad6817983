"""The CLI: --help everywhere, documented exit codes, clear configuration errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from broker.cli.main import build_parser
from broker.config import PROJECT_ROOT
from broker.errors import ExitCode
from broker.ops import logs
from tests.support import EXAMPLES


@pytest.fixture
def in_process_logs():
    """main() binds the logs to this test's captured stderr, closed after the test: point them back."""
    yield
    logs.configure("info", stream=sys.__stderr__)


def interchange(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "broker", *args], capture_output=True, text=True, cwd=PROJECT_ROOT, **kwargs
    )


def all_commands():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, p in sub.choices.items():
        nested = [a for a in p._actions if getattr(a, "choices", None) and a.dest.endswith("_command")]
        if nested:
            for child in nested[0].choices:
                yield [name, child]
        else:
            yield [name]


@pytest.mark.parametrize("words", list(all_commands()), ids=lambda w: " ".join(w))
def test_every_command_has_help(words):
    result = interchange(*words, "--help")
    assert result.returncode == 0 and "usage: interchange" in result.stdout


def test_rules_test_passes_on_the_sample_agreements():
    result = interchange("rules", "test")
    assert result.returncode == ExitCode.OK, result.stdout
    assert " 0 failed" in result.stdout


def test_validate_exits_1_and_names_the_path_and_reason_of_each_error():
    result = interchange("validate", str(EXAMPLES / "invalid"))
    assert result.returncode == ExitCode.FAILED
    assert "identifiers[1]" in result.stdout and "check" in result.stdout.lower()
    assert interchange("validate", str(EXAMPLES / "02-case.file-to-cps.json")).returncode == ExitCode.OK


def test_a_broken_agreement_stops_start_up_with_file_key_and_reason(tmp_path):
    bad = tmp_path / "agreements"
    bad.mkdir()
    (bad / "ISA-BAD.yaml").write_text("id: ISA-BAD\ntitle: x\nstatus: sometimes\n")
    result = interchange("--agreements", str(bad), "rules", "explain", str(EXAMPLES / "02-case.file-to-cps.json"))
    assert result.returncode == ExitCode.CONFIG
    assert "ISA-BAD.yaml" in result.stderr and "required" in result.stderr


def test_rules_explain_agrees_with_the_agreement_tests():
    intelligence = EXAMPLES / "10-intelligence.report-3x5x2-c-force13.json"
    result = interchange("rules", "explain", "--at", "2026-11-26T12:00:00Z", str(intelligence))
    assert "DELIVER force-13" in result.stdout
    assert "WITHHOLD force-01: handling_conditions_exclude_recipient" in result.stdout


def test_a_usage_error_in_any_command_exits_2_with_a_usage_line(tmp_path, capsys, in_process_logs):
    from broker.cli.main import main

    # each of these was a ValueError or a bare `return 2` before UsageError, in four different modules
    cases = [
        ["translate", "spi", str(tmp_path / "missing.xml"), "--mapping", "x"],
        ["dlq", "replay"],
        ["report", "usage", "--from", "2026-13-01", "--to", "2026-01-31"],
        ["audit", "report", "--reason", "r", "--name", "Smith"],
        ["agreements", "list", "--at", "yesterday"],
    ]
    for argv in cases:
        assert main(argv) == ExitCode.USAGE, argv
        assert capsys.readouterr().err.startswith("usage: "), argv


def test_every_command_is_declared_once_with_its_handler():
    from broker.cli.main import COMMANDS
    from broker.cli.main import all_commands as declared_commands

    declared = [c.name for c in declared_commands()]
    assert len(declared) == len(set(declared)) == len(COMMANDS)
    assert {" ".join(words) for words in all_commands()} == set(declared)  # each one reachable in the parser


def test_exit_codes_are_the_documented_numbers():
    assert [(c.name, int(c)) for c in ExitCode] == [
        ("OK", 0),
        ("FAILED", 1),
        ("USAGE", 2),
        ("CONFIG", 3),
        ("TRANSPORT", 4),
    ]
