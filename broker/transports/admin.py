"""A small client for the RabbitMQ management HTTP API: vhosts, users, permissions, policies, queues.

Used by `interchange topology apply`, by the tests (each makes its own vhosts and users and removes them)
and by `dlq` commands that need queue depths.  Only the standard library: the API is plain JSON over HTTP.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from broker.errors import TransportError


class RabbitAdmin:
    """A client of the RabbitMQ management HTTP API."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:15672/",
        user: str = "guest",
        password: str = "guest",
        timeout: float = 10.0,
    ) -> None:
        self.base = base_url.rstrip("/") + "/api"
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        self.headers = {"Authorization": f"Basic {token}", "Content-Type": "application/json"}
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers=self.headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            if method == "DELETE" and exc.code == 404:
                return None
            detail = exc.read().decode(errors="replace")[:300]
            raise TransportError(f"RabbitMQ management API {method} {path}: HTTP {exc.code} {detail}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise TransportError(f"RabbitMQ management API at {self.base} unreachable: {exc}") from exc
        return json.loads(raw) if raw else None

    @staticmethod
    def q(name: str) -> str:
        """A name quoted for a URL path."""
        return urllib.parse.quote(name, safe="")

    # vhosts
    def put_vhost(self, vhost: str) -> None:
        """Create a vhost (no change when it exists)."""
        self._call("PUT", f"/vhosts/{self.q(vhost)}", {})

    def delete_vhost(self, vhost: str) -> None:
        """Delete a vhost and everything in it."""
        self._call("DELETE", f"/vhosts/{self.q(vhost)}")

    def vhosts(self) -> list[str]:
        """The names of every vhost."""
        return [v["name"] for v in self._call("GET", "/vhosts")]

    # users and permissions
    def put_user(
        self, user: str, password: str | None = None, tags: str = "", password_hash: str | None = None
    ) -> None:
        """Create or update a user with a password, a password hash or neither (certificate only)."""
        body: dict[str, Any] = {"tags": tags}
        if password_hash is not None:
            body.update(password_hash=password_hash, hashing_algorithm="rabbit_password_hashing_sha256")
        elif password is not None:
            body["password"] = password
        else:
            body["password_hash"] = ""  # certificate (EXTERNAL) login only
        self._call("PUT", f"/users/{self.q(user)}", body)

    def delete_user(self, user: str) -> None:
        """Delete a user."""
        self._call("DELETE", f"/users/{self.q(user)}")

    def users(self) -> list[dict[str, Any]]:
        """Every user."""
        return list(self._call("GET", "/users"))

    def user_permissions(self, user: str) -> list[dict[str, Any]]:
        """A user's permissions on every vhost."""
        return list(self._call("GET", f"/users/{self.q(user)}/permissions"))

    def clear_permissions(self, vhost: str, user: str) -> None:
        """Remove a user's permissions on a vhost."""
        self._call("DELETE", f"/permissions/{self.q(vhost)}/{self.q(user)}")

    def set_permissions(self, vhost: str, user: str, configure: str, write: str, read: str) -> None:
        """Set a user's configure, write and read permissions on a vhost."""
        self._call(
            "PUT",
            f"/permissions/{self.q(vhost)}/{self.q(user)}",
            {"configure": configure, "write": write, "read": read},
        )

    # policies and queues
    def put_policy(
        self,
        vhost: str,
        name: str,
        pattern: str,
        definition: dict[str, Any],
        apply_to: str = "queues",
        priority: int = 0,
    ) -> None:
        """Create or update a policy on a vhost."""
        self._call(
            "PUT",
            f"/policies/{self.q(vhost)}/{self.q(name)}",
            {"pattern": pattern, "definition": definition, "apply-to": apply_to, "priority": priority},
        )

    def queue(self, vhost: str, name: str) -> dict[str, Any]:
        """One queue's details."""
        return dict(self._call("GET", f"/queues/{self.q(vhost)}/{self.q(name)}"))

    def queues(self, vhost: str) -> list[dict[str, Any]]:
        """Every queue of a vhost."""
        return list(self._call("GET", f"/queues/{self.q(vhost)}"))

    def all_queues(self) -> list[dict[str, Any]]:
        """Every queue of every vhost (name, vhost, messages, consumers only): one call for readiness."""
        return list(self._call("GET", "/queues?columns=name,vhost,messages,consumers"))

    def delete_queue(self, vhost: str, name: str) -> None:
        """Delete a queue."""
        self._call("DELETE", f"/queues/{self.q(vhost)}/{self.q(name)}")

    def connections(self) -> list[dict[str, Any]]:
        """Every client connection."""
        return list(self._call("GET", "/connections?columns=name,vhost,client_properties"))

    def close_connection(self, name: str) -> None:
        """Close a client connection by name."""
        self._call("DELETE", f"/connections/{self.q(name)}")

    def overview(self) -> dict[str, Any]:
        """The broker's overview (versions, totals, listeners)."""
        return dict(self._call("GET", "/overview"))
