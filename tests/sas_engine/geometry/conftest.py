"""Geometry tests run torch single-threaded: on a shared, oversubscribed machine multi-threaded element-wise ops
spin and slow down by an order of magnitude, and these tests gain nothing from a second thread."""
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
