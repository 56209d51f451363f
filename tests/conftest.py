"""Test-wide settings: offline hubs, no analytics, small thread counts (CI has 2 cores)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

ONE_THREAD_DIRS = ("sas_engine/distill", "sas_engine/models", "sas_engine/sparse")
"""Test folders whose tests run torch on one thread: tiny sparse ops stall in OpenMP hand-offs on a busy 2-core
machine (and a cropped training step is faster on 1 thread than on 2 anyway)."""


@pytest.fixture(autouse=True)
def _one_torch_thread_for_sparse_tests(request):
    path = str(request.path).replace(os.sep, "/")
    if not any(f"/tests/{d}/" in path for d in ONE_THREAD_DIRS):
        yield
        return
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
