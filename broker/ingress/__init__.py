"""Bringing records in: publishing with confirms and ingesting legacy files through adapters."""
