"""Shared test set-up."""

import pytest
import torch

# The tests run many tiny forward passes; on a shared 2-core machine intra-op threads
# only contend with each other (and with other processes), so one thread is fastest.
torch.set_num_threads(1)


@pytest.fixture
def registry_guard():
    """Undo the activation registrations a test makes."""
    from spacefold._core import patterns

    saved = dict(patterns._REGISTRY)
    yield
    patterns._REGISTRY.clear()
    patterns._REGISTRY.update(saved)
