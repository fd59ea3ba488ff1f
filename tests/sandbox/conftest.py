"""Fixtures for the sandbox tests: one shared Sandbox per session (starting workers costs ~0.3 s), and a
factory for tests that need their own (closed at teardown)."""
from __future__ import annotations

import warnings

import pytest

from sandbox import Limits, Sandbox, SandboxWarning


def _quiet_sandbox(**kwargs) -> Sandbox:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SandboxWarning)     # layer warnings are asserted in their own test
        return Sandbox(**kwargs)


@pytest.fixture(scope="session")
def sb():
    box = _quiet_sandbox(workers=2, limits=Limits(timeout_s=10.0))
    yield box
    box.close()


@pytest.fixture
def make_sandbox():
    boxes = []

    def make(**kwargs) -> Sandbox:
        box = _quiet_sandbox(**kwargs)
        boxes.append(box)
        return box

    yield make
    for box in boxes:
        box.close()
