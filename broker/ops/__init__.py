"""Running it: metrics, health endpoints, logs, dead letters, provisioning and access."""
