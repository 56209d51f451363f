"""One intra-op thread for the sparse tests: their many tiny ops only lose to OpenMP hand-offs on a busy 2-core box."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
