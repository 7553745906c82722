"""Fixtures of the integration tests."""

from __future__ import annotations

import socket

import pytest


@pytest.fixture
def offline(monkeypatch):
    """Any attempt to open a network connection or to download a data set fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the network was touched")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    import anomalib.data.utils.download as download
    import anomalib.models.image.draem.lightning_model as draem
    import anomalib.models.image.dsr.lightning_model as dsr
    import anomalib.models.image.glass.lightning_model as glass

    for module in (download, draem, dsr, glass):
        monkeypatch.setattr(module, "download_and_extract", refuse)
