"""Deciding one record: validation, identifiers, agreements, conditions, scope, projection, corrections."""
