"""Distillation tests run torch on one thread: tiny sparse ops stall in OpenMP hand-offs on a busy 2-core machine."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
