"""The audit trail: entries, the hash-chained log and its writer, the index, checkpoints, reports."""
