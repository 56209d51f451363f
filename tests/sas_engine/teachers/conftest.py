"""Fixtures of the teacher tests: tiny open_clip architectures registered from JSON, weights saved to tmp files."""
import json

import pytest
import torch

TINY = {
    "sas-test-tiny": {"embed_dim": 32,
                      "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16, "head_width": 32},
                      "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}},
    "sas-test-tiny-1layer": {"embed_dim": 24,
                             "vision_cfg": {"image_size": 64, "layers": 1, "width": 48, "patch_size": 16,
                                            "head_width": 24},
                             "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                                          "layers": 1}},
    "sas-test-tiny-wide": {"embed_dim": 48,
                           "vision_cfg": {"image_size": 64, "layers": 2, "width": 64, "patch_size": 16,
                                          "head_width": 32},
                           "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2,
                                        "layers": 1}},
}


@pytest.fixture(scope="session")
def tiny_clip_archs(tmp_path_factory):
    import open_clip

    d = tmp_path_factory.mktemp("openclip_cfg")
    for name, cfg in TINY.items():
        p = d / f"{name}.json"
        p.write_text(json.dumps(cfg))
        open_clip.add_model_config(p)
    return list(TINY)


@pytest.fixture(scope="session")
def tiny_clip_ckpt(tiny_clip_archs, tmp_path_factory):
    """Path of saved random weights of 'sas-test-tiny' (and the model they came from)."""
    import open_clip

    torch.manual_seed(0)
    model = open_clip.create_model("sas-test-tiny", pretrained=None).eval()
    p = tmp_path_factory.mktemp("ckpt") / "tiny_clip.pt"
    torch.save(model.state_dict(), p)
    return p, model


@pytest.fixture(scope="session")
def minilm():
    from sas_engine.teachers.text import get_text_encoder

    torch.set_num_threads(2)
    return get_text_encoder(None)
