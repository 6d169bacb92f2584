"""Shared test fixtures."""

import pytest
import torch


@pytest.fixture(scope="module")
def one_thread():
    """Run tiny networks on one thread: with tensors this small, thread synchronisation costs
    more than it gains, and on a shared CPU an oversubscribed pool was 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
