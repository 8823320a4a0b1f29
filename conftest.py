"""Loads the DM Harness pytest plugin from the checkout (see README: run from the repo)."""

pytest_plugins = ["harness.fixtures.plugin"]
