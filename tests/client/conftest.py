"""Fixtures for the client's tests: embedded emulators (HTTP and HTTPS, one each per session)
reached over loopback with the real client."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator

import pytest

from harness.hyperv.session import HostSession
from tests.embedded import Emulator, running_emulator


@pytest.fixture(scope="session")
def http_emulator() -> Iterator[Emulator]:
    """A Windows Server 2022 emulator over HTTP, shared by the session (VM names are unique)."""
    with running_emulator(tls=False) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def https_emulator() -> Iterator[Emulator]:
    """The same over HTTPS with the emulator's generated certificate as the CA."""
    with running_emulator(tls=True) as emulator:
        yield emulator


@pytest.fixture(params=["http", "https"])
def any_emulator(
    request: pytest.FixtureRequest, http_emulator: Emulator, https_emulator: Emulator
) -> Emulator:
    return http_emulator if request.param == "http" else https_emulator


@pytest.fixture
def dm_session(http_emulator: Emulator) -> Iterator[HostSession]:
    with http_emulator.session() as session:
        yield session


@pytest.fixture
def vm_name(request: pytest.FixtureRequest) -> str:
    """A VM name unique to this test (stable prefix, random suffix never shown in test ids)."""
    slug = re.sub(r"[^A-Za-z0-9-]+", "-", request.node.name)[:30].strip("-")
    return f"dmh-client-{slug}-{uuid.uuid4().hex[:6]}"
