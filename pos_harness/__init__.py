"""pos-harness integrations with other tools (``pos_harness.locust``: Locust users that are terminals)."""
