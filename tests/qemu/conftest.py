"""The QEMU tests run one at a time on one xdist worker: each boots a real kernel under TCG."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/qemu/" in item.nodeid:
            item.add_marker(pytest.mark.xdist_group("qemu"))
