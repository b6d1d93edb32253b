"""Fixtures of the scenario suite: each scenario gets its own server and data directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import MQCHAT, Server, World


@pytest.fixture
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    """A running `mqchat serve` (with the arguments of a `serve_args` mark, if any); after the
    scenario, every client is stopped, then the server (SIGTERM), which must exit with 0."""
    assert MQCHAT.exists(), f"{MQCHAT} is missing: build it with `cargo build -p mqchat`"
    mark = request.node.get_closest_marker("serve_args")
    server = Server(tmp_path / "data", *(mark.args if mark else ()))
    server.start()
    world = World(server)
    yield world
    code = world.close()
    assert code == 0, f"mqchat serve exited with {code}; its log ends with:\n{server.log_tail()}"
