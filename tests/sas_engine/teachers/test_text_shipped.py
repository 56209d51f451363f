"""The shipped text-embedding table (``checkpoints/text/``): it holds exactly what a cold demo build encodes, its rows
are the model's own embeddings, ``encode`` serves them without loading the model, and a bad table is named."""
from __future__ import annotations

import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.teachers import text as T
from sas_engine.teachers.compact import shipped_text_strings
from sas_engine.teachers.mat import MaskCueCaptioner, mask_cue_sentences


def _table() -> dict:
    enc = T.MiniLMTextEncoder()
    table = T.read_shipped_texts(enc.disk_key, enc.dim)
    assert table, f"no shipped table for {enc.disk_key} in {T.SHIPPED_TEXT_DIR}"
    return table


def test_mask_cue_sentences_enumerate_what_the_captioner_says():
    got = mask_cue_sentences(["chair", "sofa"])
    assert len(got) == len(set(got)) == 2 * 3 * 12 * 4
    assert "a small and red and round chair in a scene" in got and "a sofa in a scene" not in got  # colour always
    import numpy as np
    cap = MaskCueCaptioner()
    img = np.zeros((60, 80, 3), np.uint8)
    img[10:50, 30:40] = (200, 30, 30)
    m = np.zeros((60, 80), bool)
    m[10:50, 30:40] = True  # tall, 8% of the image, red
    from sas_engine.teachers.mat import mat_sentence
    assert mat_sentence(cap.adjectives(img, m), "chair") in got


def test_shipped_table_holds_exactly_the_demo_texts():
    table = _table()
    assert list(table) == shipped_text_strings()
    assert len(table) == 2900
    assert all(v.shape == (384,) and v.dtype == torch.float32 for v in table.values())


def test_shipped_rows_are_the_models_embeddings_and_encode_serves_them_without_the_model():
    table = _table()
    texts = list(table)[::97]  # 30 strings across prompts and sentences
    enc = T.MiniLMTextEncoder()
    got = enc.encode(texts)
    assert enc._model is None  # served from the table
    assert torch.equal(got, torch.stack([table[t] for t in texts]))
    with torch.no_grad():
        ref = torch.nn.functional.normalize(enc._encode_batch(texts).float().cpu(), dim=-1)
    assert (ref - got).abs().max().item() < 1e-5
    other = enc.encode(["a purple giraffe on a sofa"])  # not shipped: the model encodes it
    assert enc._model is not None and other.shape == (1, 384)


def test_a_damaged_or_foreign_table_is_named(tmp_path, monkeypatch):
    monkeypatch.setattr(T, "SHIPPED_TEXT_DIR", tmp_path)
    assert T.read_shipped_texts("minilm-x", 384) == {}  # none shipped: the model is used
    (tmp_path / "minilm-x.pt").write_bytes(b"not a torch file")
    with pytest.raises(SASInputError, match="minilm-x.pt"):
        T.read_shipped_texts("minilm-x", 384)
    torch.save({"format_version": T.SHIPPED_TEXT_VERSION, "disk_key": "minilm-y", "texts": ["a"],
                "embeddings": torch.zeros(1, 384)}, tmp_path / "minilm-x.pt")
    with pytest.raises(SASInputError, match="minilm-x"):
        T.read_shipped_texts("minilm-x", 384)
    torch.save({"format_version": T.SHIPPED_TEXT_VERSION, "disk_key": "minilm-x", "texts": ["a", "b"],
                "embeddings": torch.zeros(1, 384)}, tmp_path / "minilm-x.pt")
    with pytest.raises(SASInputError, match="rebuild"):
        T.read_shipped_texts("minilm-x", 384)


def test_written_table_holds_the_models_rows_not_an_older_table(tmp_path, monkeypatch):
    class Enc(T.TextEncoder):
        name, dim, disk_key = "fake", 4, "fake-1"

        def _encode_batch(self, texts):
            return torch.tensor([[len(t), 1.0, 0.0, 0.0] for t in texts])

    monkeypatch.setattr(T, "SHIPPED_TEXT_DIR", tmp_path)
    enc = Enc()
    enc._shipped = {"ab": torch.zeros(4)}  # a stale table entry the writer must not copy
    path = T.write_shipped_texts(enc, ["ab", "abc", "ab"])
    assert path == tmp_path / "fake-1.pt"
    got = T.read_shipped_texts("fake-1", 4)
    assert list(got) == ["ab", "abc"]
    assert torch.allclose(got["ab"], torch.nn.functional.normalize(torch.tensor([2.0, 1, 0, 0]), dim=0))
