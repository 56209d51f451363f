"""Fixtures of the capability tests: a tiny random Stable Diffusion pipeline saved as a local diffusers folder."""
import pytest
import torch


@pytest.fixture(scope="session")
def tiny_sd_dir(tmp_path_factory):
    from sas_engine.capability.tiny import build_tiny_sd_pipeline

    torch.set_num_threads(2)
    root = tmp_path_factory.mktemp("tiny_sd")
    pipe = build_tiny_sd_pipeline(seed=0, tokenizer_dir=root / "tok_src")
    pipe.save_pretrained(root / "sd")
    return root / "sd"


@pytest.fixture(scope="session")
def tiny_sd_pipe(tiny_sd_dir):
    from sas_engine.capability.sd import load_sd_pipeline

    return load_sd_pipeline(tiny_sd_dir)
