"""The `interchange` command line: one module per command group."""
