"""SAM + CLIP mask teacher: architecture read from the checkpoint, loading errors, predictions of a tiny model."""
import numpy as np
import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.teachers import MaskPrediction, build_teacher
from sas_engine.teachers.sam_clip import SAM_TYPES, infer_sam_arch, load_sam

TINY_ARCH = dict(encoder_embed_dim=32, encoder_depth=2, encoder_num_heads=2, encoder_global_attn_indexes=[1])


@pytest.fixture(scope="module")
def tiny_sam_ckpt(tmp_path_factory):
    from segment_anything.build_sam import _build_sam

    torch.manual_seed(0)
    sam = _build_sam(**TINY_ARCH)
    p = tmp_path_factory.mktemp("sam") / "sam_tiny.pth"
    torch.save(sam.state_dict(), p)
    return p, sam


def test_arch_is_read_from_checkpoint(tiny_sam_ckpt):
    p, sam = tiny_sam_ckpt
    assert infer_sam_arch(sam.state_dict()) == TINY_ARCH
    loaded = load_sam(p)
    assert torch.equal(loaded.image_encoder.patch_embed.proj.weight, sam.image_encoder.patch_embed.proj.weight)
    assert loaded.image_encoder.blocks[1].window_size == 0 and loaded.image_encoder.blocks[0].window_size == 14


def test_released_arch_table_matches_segment_anything():
    from segment_anything.build_sam import _build_sam

    with torch.device("meta"):
        sd = _build_sam(**SAM_TYPES["vit_b"]).state_dict()
    assert infer_sam_arch(sd) == SAM_TYPES["vit_b"]


def test_load_errors(tiny_sam_ckpt, tmp_path):
    p, sam = tiny_sam_ckpt
    with pytest.raises(SASInputError, match="sam_tiny.pth.*does not match SAM vit_b"):
        load_sam(p, "vit_b")
    with pytest.raises(SASInputError, match="not found"):
        load_sam(tmp_path / "sam_missing.pth")
    sd = sam.state_dict()
    sd.pop("mask_decoder.iou_prediction_head.layers.0.weight")
    sd["mask_decoder.extra.weight"] = torch.zeros(1)
    q = tmp_path / "sam_bad.pth"
    torch.save({"model": sd}, q)
    with pytest.raises(SASInputError, match=r"sam_bad.pth.*missing keys: mask_decoder.iou_prediction_head.layers.0"
                                             r".weight; unexpected keys: mask_decoder.extra.weight"):
        load_sam(q)
    r = tmp_path / "not_sam.pth"
    torch.save({"w": torch.zeros(2)}, r)
    with pytest.raises(SASInputError, match="not a SAM checkpoint"):
        load_sam(r)


def test_sam_clip_predicts_labelled_masks(tiny_sam_ckpt, tiny_clip_ckpt):
    p, _ = tiny_sam_ckpt
    clip_path, _ = tiny_clip_ckpt
    vocab = ["chair", "table", "wall"]
    t = build_teacher("sam_clip", sam_checkpoint=str(p), clip_checkpoint=str(clip_path), clip_arch="sas-test-tiny",
                      vocabulary=vocab, points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0,
                      min_area_frac=0.0)
    assert t.name == "sam_clip" and t.kind == "mask" and t.vocabulary == tuple(vocab)
    im = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    preds = t.predict(im)
    assert len(preds) >= 1
    for pr in preds:
        assert isinstance(pr, MaskPrediction) and pr.mask.shape == (60, 80) and pr.mask.dtype == bool
        assert pr.label in vocab and 0.0 <= pr.score <= 1.0 and pr.mask.any()
    # classification = argmax of CLIP crop embedding . vocabulary text embeddings
    k, prob = t.classify(im, [pr.mask for pr in preds])
    crops = t.crops(im, [preds[0].mask])
    assert crops.shape == (1, 3, 64, 64)
    with torch.no_grad():
        e = torch.nn.functional.normalize(t.clip.encode_image(crops), dim=-1)
    sims = e @ t.text_encoder.encode([f"a {w} in a scene" for w in vocab]).T
    assert vocab[int(sims.argmax())] == preds[0].label == vocab[int(k[0])]
    assert prob[0] >= 1 / 3
