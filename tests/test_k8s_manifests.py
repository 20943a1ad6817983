"""deploy/k8s/ is valid Kubernetes (the API's own JSON schemas, offline, from kubernetes-validate) and
says what docs/RELIABILITY.md and docs/SCALING.md promise: 3 RabbitMQ nodes with pause_minority, workers
that know their index and count, one audit writer."""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from broker.config import PROJECT_ROOT

K8S = PROJECT_ROOT / "deploy" / "k8s"
VERSION = "1.30.0"


def _documents() -> list[tuple[str, dict]]:
    return [(f.name, doc) for f in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(f.read_text()) if doc]


def _one(kind: str, name: str) -> dict:
    [doc] = [d for _, d in _documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


@pytest.mark.parametrize(("file", "doc"), _documents(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_every_manifest_is_valid_against_the_kubernetes_schema(file, doc):
    kubernetes_validate.validate(doc, VERSION, strict=True)


def test_the_schema_check_would_catch_a_misspelt_field():
    doc = _one("StatefulSet", "rabbitmq")
    broken = {**doc, "spec": {**doc["spec"], "replica": 3}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSION, strict=True)


def test_rabbitmq_runs_three_nodes_with_pause_minority_and_the_consistent_hash_exchange():
    rabbit = _one("StatefulSet", "rabbitmq")
    config = _one("ConfigMap", "rabbitmq-config")["data"]
    assert rabbit["spec"]["replicas"] == 3
    assert "cluster_partition_handling = pause_minority" in config["rabbitmq.conf"]
    assert "rabbitmq_consistent_hash_exchange" in config["enabled_plugins"]
    assert _one("PodDisruptionBudget", "rabbitmq")["spec"]["maxUnavailable"] == 1


def test_workers_know_their_index_and_count_and_there_is_one_audit_writer():
    workers = _one("StatefulSet", "interchange-worker")
    settings = _one("ConfigMap", "interchange-settings")["data"]
    assert int(settings["INTERCHANGE_WORKERS"]) == workers["spec"]["replicas"]
    assert int(settings["INTERCHANGE_PARTITIONS"]) >= workers["spec"]["replicas"]
    env = {e["name"]: e for e in workers["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "pod-index" in env["INTERCHANGE_WORKER_INDEX"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert _one("StatefulSet", "interchange-audit-writer")["spec"]["replicas"] == 1


def test_the_settings_the_manifests_set_are_ones_interchange_reads():
    from broker.config import ENV_VARS

    settings = _one("ConfigMap", "interchange-settings")["data"]
    known = set(ENV_VARS) | {"INTERCHANGE_CONFIG"}  # the settings file itself (load_settings)
    assert set(settings) <= known, set(settings) - known
    assert Path(K8S).is_dir()
