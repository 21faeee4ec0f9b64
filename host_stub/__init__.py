"""The stub acquirer host: pure decisions (host), books (ledger), TCP shell (server), CLI."""
