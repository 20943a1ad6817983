"""Interchange: the routing core, sharing rules, audit, transport and CLI."""

__version__ = "0.1.0"
