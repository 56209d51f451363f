"""Model Alignment via Text: captioner cues, adjective extraction, sentence format, painting, overlaps, validity."""
import numpy as np
import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.teachers import MaskPrediction, align_masks, extract_adjectives, mat_sentence
from sas_engine.teachers.mat import MaskCueCaptioner, align_masks_compact, color_name, get_captioner


def _image():
    im = np.full((60, 80, 3), 200, np.uint8)  # light grey background
    im[5:11, 5:11] = (210, 20, 25)            # small red square
    im[10:55, 60:68] = (30, 60, 210)          # tall blue bar
    im[35:58, 0:56] = (40, 150, 50)           # wide green slab
    return im


def _disk(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_color_names():
    assert color_name((250, 10, 10)) == "red"
    assert color_name((20, 40, 230)) == "blue"
    assert color_name((245, 245, 245)) == "white"
    assert color_name((110, 70, 30)) == "brown"
    assert color_name((125, 125, 130)) == "gray"


def test_mask_cue_captioner_reads_colour_size_shape():
    im = _image()
    cap = MaskCueCaptioner()
    red = np.zeros((60, 80), bool); red[5:11, 5:11] = True
    blue = np.zeros((60, 80), bool); blue[10:55, 60:68] = True
    green = np.zeros((60, 80), bool); green[35:58, 0:56] = True
    assert cap.adjectives(im, red) == ["small", "red"]
    assert cap.adjectives(im, blue) == ["blue", "tall"]
    assert cap.adjectives(im, green) == ["large", "green", "wide"]
    disk = _disk(60, 80, 30, 40, 14)
    im2 = np.zeros_like(im); im2[disk] = (240, 230, 40)
    assert cap.adjectives(im2, disk) == ["yellow", "round"]
    assert cap.adjectives(im, np.zeros((60, 80), bool)) == []


def test_extract_adjectives_rule():
    assert extract_adjectives("a red wooden chair in a living room") == ["red", "wooden"]
    assert extract_adjectives("an old leather sofa next to a lamp") == ["old", "leather"]
    assert extract_adjectives("a comfortable chair near the window") == ["comfortable"]  # suffix rule before noun
    assert extract_adjectives("a chair") == []
    assert extract_adjectives("the table is dangerous") == []  # suffix words after the noun phrase are not kept
    assert extract_adjectives("a big big shiny blue glossy table", max_adjectives=3) == ["big", "shiny", "blue"]


def test_mat_sentence_format():
    assert mat_sentence(["red", "small"], "chair") == "a red and small chair in a scene"
    assert mat_sentence(["red"], "chair") == "a red chair in a scene"
    assert mat_sentence([], "chair") == "a chair in a scene"


def test_align_masks_paints_text_embeddings(minilm):
    im = _image()
    a = np.zeros((60, 80), bool); a[5:11, 5:11] = True
    b = np.zeros((60, 80), bool); b[10:55, 60:68] = True
    c = np.zeros((60, 80), bool); c[8:20, 8:30] = True  # overlaps a
    preds = [MaskPrediction(a, "chair", 0.9), MaskPrediction(b, "door", 0.5), MaskPrediction(c, "table", 0.4)]
    feat, valid = align_masks(preds, im, minilm)
    assert feat.shape == (60, 80, 384) and valid.shape == (60, 80) and valid.dtype == torch.bool
    assert torch.equal(valid, torch.from_numpy(a | b | c))
    seg, emb, texts, labels, scores = align_masks_compact(preds, im, minilm)
    assert texts[0] == "a small and red chair in a scene"
    assert texts[1] == "a blue and tall door in a scene"
    assert labels == ["chair", "door", "table"] and scores == [0.9, 0.5, 0.4]
    ref = minilm.encode(texts)
    assert torch.allclose(feat[9, 9], ref[0])          # overlap: chair (0.9) beats table (0.4)
    assert torch.allclose(feat[30, 64], ref[1])
    assert torch.allclose(feat[18, 25], ref[2])          # table where it is alone
    assert torch.allclose(feat[valid].norm(dim=-1), torch.ones(int(valid.sum())), atol=1e-5)
    assert not feat[~valid].any()                        # no feature outside masks (and marked invalid)
    # the higher score wins regardless of order
    feat2, _ = align_masks(preds[::-1], im, minilm)
    assert torch.equal(feat2, feat)


def test_align_masks_hidden_and_empty_masks(minilm):
    im = _image()
    big = np.ones((60, 80), bool)
    small = np.zeros((60, 80), bool); small[:5, :5] = True
    seg, emb, texts, labels, _ = align_masks_compact(
        [MaskPrediction(small, "sink", 0.1), MaskPrediction(big, "wall", 0.9),
         MaskPrediction(np.zeros((60, 80), bool), "bed", 1.0)], im, minilm)
    assert labels == ["wall"] and (seg == 0).all()      # fully hidden and empty masks produce no segment
    feat, valid = align_masks([], im, minilm)
    assert feat.shape == (60, 80, 384) and not valid.any()
    with pytest.raises(SASInputError, match="shape"):
        align_masks([MaskPrediction(np.ones((10, 10), bool), "x", 1.0)], im, minilm)


def test_get_captioner():
    assert isinstance(get_captioner(None), MaskCueCaptioner)
    with pytest.raises(SASInputError):
        get_captioner("tap")
    with pytest.raises(SASInputError, match="config.json"):
        get_captioner("hf:/nonexistent/folder")


def test_suffix_rule_skips_nouns():
    assert extract_adjectives("a kitchen table in a room") == []
    assert extract_adjectives("room table table") == []
    assert extract_adjectives("a painted wooden bookshelf") == ["painted", "wooden"]


@pytest.mark.slow
def test_hf_captioner_with_tiny_blip(tmp_path):
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    from sas_engine.teachers.mat import HFCaptioner

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "red", "wooden", "chair", "in", "room", "the", "big"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    torch.manual_seed(0)
    cfg = BlipConfig(text_config=dict(vocab_size=len(words), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                      intermediate_size=64, encoder_hidden_size=32, bos_token_id=2, sep_token_id=3,
                                      pad_token_id=0),
                     vision_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=64, image_size=32, patch_size=16), projection_dim=32)
    folder = tmp_path / "blip"
    BlipForConditionalGeneration(cfg).eval().save_pretrained(folder)
    BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}),
                  tokenizer=BertTokenizer(str(tmp_path / "vocab.txt"))).save_pretrained(folder)
    cap = get_captioner(f"hf:{folder}")
    assert isinstance(cap, HFCaptioner) and cap.config()["path"] == str(folder)
    im = np.random.default_rng(0).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    m = np.zeros((40, 50), bool)
    m[5:20, 5:30] = True
    crop = cap.crop(im, m)
    assert crop.shape == (17, 29, 3)  # box 15 x 25 grown by 10 % (1 / 2 px) per side, clipped at the border
    caps = cap.captions(im, [m, ~m])
    assert len(caps) == 2 and all(set(c.split()) <= set(words[5:]) for c in caps)
    assert cap.adjectives_batch(im, [m, ~m]) == [extract_adjectives(c) for c in caps]


def test_batched_mask_cues_equal_a_per_mask_restatement():
    """The captioner's batched statistics (one product for all masks' colour sums) give exactly the words that
    averaging each mask's own pixels and taking its own bounding box give: overlapping, scattered and empty masks."""
    cap = MaskCueCaptioner()

    def one(image, m):
        n = int(m.sum())
        if n == 0:
            return []
        out = ["small"] if n / m.size < cap.small_frac else ["large"] if n / m.size > cap.large_frac else []
        out.append(color_name(image[m].reshape(-1, 3).mean(0)))
        ys, xs = np.nonzero(m)
        h, w = int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1)
        if h >= cap.elongation * w:
            out.append("tall")
        elif w >= cap.elongation * h:
            out.append("wide")
        elif cap.round_fill[0] <= n / (h * w) <= cap.round_fill[1] and min(h, w) >= 4:
            out.append("round")
        return out

    rng = np.random.default_rng(0)
    for _ in range(40):
        H, W = int(rng.integers(10, 120)), int(rng.integers(10, 160))
        img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        lab = rng.integers(0, 6, (H // 8 + 1, W // 8 + 1)).repeat(8, 0).repeat(8, 1)[:H, :W]
        masks = [lab == r for r in range(7)] + [rng.random((H, W)) < 0.02, lab < 3, np.zeros((H, W), bool)]
        assert cap.adjectives_batch(img, masks) == [one(img, m) for m in masks]
    assert cap.adjectives_batch(img, []) == []
