"""Fixtures of the unit tests that several modules share."""
from __future__ import annotations

import pytest


@pytest.fixture
def api(stack):
    """The JSON API of the module's gateway stack (tests/fakes/gateway.py), over HTTPS."""
    with stack.browser() as c:
        yield c
