"""The deployment files: alert rules checked and unit-tested by promtool, compose file against the Compose
Specification schema, and the Grafana dashboard's queries parsed for the metric names they use."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import jsonschema
import yaml

from broker.config import PROJECT_ROOT

DEPLOY = PROJECT_ROOT / "deploy"
PROMETHEUS = DEPLOY / "prometheus"

# PromQL words that look like metric names but are functions, keywords or label names.
PROMQL_WORDS = {
    "sum",
    "by",
    "rate",
    "increase",
    "delta",
    "histogram_quantile",
    "min",
    "max",
    "avg",
    "count",
    "on",
    "and",
    "or",
    "unless",
    "without",
    "time",
    "min_over_time",
    "max_over_time",
    "le",
    "bool",
    "ignoring",
    "group_left",
    "group_right",
    "humanize",
    "offset",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("promtool")
    assert tool, "promtool is missing: `make test` installs it (scripts/ensure-promtool.sh)"
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60)


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: identifiers outside braces, strings and grouping lists."""
    expr = re.sub(r'"[^"]*"', '""', expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    return {
        w
        for w in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr)
        if w not in PROMQL_WORDS and not re.fullmatch(r"\d+[smhd]?", w)
    }


def dashboard_exprs() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "interchange.json").read_text())
    return [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]


def test_the_alert_rules_pass_promtool_check_rules():
    # Given the alert rules / When promtool checks them / Then they are valid
    result = promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_behaves_as_its_unit_tests_say():
    # Given rule unit tests covering every alert / When promtool runs them / Then they pass
    result = promtool("test", "rules", str(PROMETHEUS / "alerts.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    alerts = {r["alert"] for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]}
    tested = {
        t["alertname"]
        for case in yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
        for t in case["alert_rule_test"]
    }
    assert alerts == tested


def test_the_prometheus_configuration_passes_promtool_check_config():
    result = promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_runbook_section_in_the_operations_guide():
    # Given the alerts and docs/OPERATIONS.md
    guide = (PROJECT_ROOT / "docs" / "OPERATIONS.md").read_text()
    rules = [r for g in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"] for r in g["rules"]]
    # Then each alert names its runbook anchor and the guide has a heading for it
    for rule in rules:
        assert rule["annotations"]["runbook"].endswith("#" + rule["alert"].lower())
        assert f"### {rule['alert']}" in guide


def test_the_compose_file_is_valid_against_the_compose_specification_schema():
    # Given the vendored Compose Specification schema and deploy/compose.yaml
    schema = json.loads((PROJECT_ROOT / "tests" / "data" / "compose-spec.schema.json").read_text())
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    # When validated / Then there are no errors, and the checker does catch a broken file
    validator = jsonschema.Draft201909Validator(schema)
    assert [e.message for e in validator.iter_errors(compose)] == []
    assert list(validator.iter_errors({"services": {"worker": {"image": 3, "healthcheck": "yes"}}}))


def test_every_compose_service_has_a_health_check_and_its_mounted_files_exist():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    for name, service in compose["services"].items():
        assert "healthcheck" in service, name
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is missing"


def test_the_metric_name_parser_finds_names_and_ignores_functions_and_labels():
    expr = 'histogram_quantile(0.95, sum by (le, stage) (rate(interchange_stage_seconds_bucket{stage="x"}[5m])))'
    assert metric_names(expr) == {"interchange_stage_seconds_bucket"}
    assert metric_names('a_total and on() b{queue="q"} > 0') == {"a_total", "b"}
