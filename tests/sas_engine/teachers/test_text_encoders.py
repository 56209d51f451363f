"""Text encoders: MiniLM default (real packaged weights), open_clip from local files, caching, errors."""
import threading

import pytest
import torch

from sas_engine.errors import SASInputError
from sas_engine.teachers.text import OpenCLIPTextEncoder, get_text_encoder, load_open_clip, parse_openclip_spec


def test_minilm_default_is_real_384d_and_normalised(minilm):
    assert minilm.name == "minilm" and minilm.dim == 384
    assert get_text_encoder("minilm") is minilm  # one shared instance
    e = minilm.encode(["a sofa in a scene", "a couch in a scene", "a toilet in a scene"])
    assert e.shape == (3, 384) and e.dtype == torch.float32
    assert torch.allclose(e.norm(dim=1), torch.ones(3), atol=1e-5)
    sim = e @ e.T
    assert sim[0, 1] > 0.8 and sim[0, 2] < 0.6 and sim[0, 1] > sim[0, 2] + 0.3


def test_cache_by_string_and_batching(minilm):
    before = minilm.cache_size()
    texts = [f"a thing number {i} in a scene" for i in range(70)]  # more than one batch of 64
    a = minilm.encode(texts + texts[:3])
    assert a.shape == (73, 384)
    assert minilm.cache_size() == before + 70
    assert torch.equal(a[70:], a[:3])
    b = minilm.encode(texts[::-1])
    assert torch.equal(b, a[:70].flip(0))
    assert minilm.cache_size() == before + 70
    assert minilm.encode([]).shape == (0, 384)
    with pytest.raises(TypeError):
        minilm.encode("a single string")


def test_encode_labels_uses_template(minilm):
    a = minilm.encode_labels(["chair", "table"])
    b = minilm.encode(["a chair in a scene", "a table in a scene"])
    assert torch.equal(a, b)


def test_thread_safe_cache(tiny_clip_archs):
    model, tok = load_open_clip("sas-test-tiny", None)
    enc = OpenCLIPTextEncoder(model, tok, name="tiny")
    texts = [f"word {i}" for i in range(40)]
    ref = enc.encode(texts)
    enc2 = OpenCLIPTextEncoder(model, tok, name="tiny2")
    results, errors = {}, []

    def work(k):
        try:
            results[k] = enc2.encode(texts[k % 5:] + texts[:k % 5])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors and enc2.cache_size() == 40
    for k, r in results.items():
        assert torch.allclose(r, torch.cat([ref[k % 5:], ref[:k % 5]]), atol=1e-6)


def test_openclip_from_local_checkpoint(tiny_clip_ckpt):
    path, model = tiny_clip_ckpt
    enc = get_text_encoder(f"openclip:sas-test-tiny:{path}")
    assert enc.dim == 32 and enc.name == f"openclip:sas-test-tiny:{path}"
    e = enc.encode(["a chair in a scene", "a bed in a scene"])
    assert e.shape == (2, 32) and torch.allclose(e.norm(dim=1), torch.ones(2), atol=1e-5)
    import open_clip

    ref = model.encode_text(open_clip.get_tokenizer("sas-test-tiny")(["a chair in a scene", "a bed in a scene"]))
    assert torch.allclose(e, torch.nn.functional.normalize(ref.detach(), dim=-1), atol=1e-5)


def test_openclip_errors_name_the_file(tiny_clip_ckpt, tmp_path):
    path, _ = tiny_clip_ckpt
    missing = tmp_path / "nope.pt"
    with pytest.raises(SASInputError, match="nope.pt"):
        get_text_encoder(f"openclip:sas-test-tiny:{missing}")
    with pytest.raises(SASInputError, match="tiny_clip.pt.*sas-test-tiny-wide"):
        load_open_clip("sas-test-tiny-wide", path)  # weights of another architecture
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(SASInputError, match="junk.pt"):
        load_open_clip("sas-test-tiny", junk)
    with pytest.raises(SASInputError, match="unknown open_clip architecture"):
        load_open_clip("ViT-Nonexistent", path)
    with pytest.raises(SASInputError, match="bad text encoder spec"):
        parse_openclip_spec("clip-b32")
    assert parse_openclip_spec("openclip:ViT-B-32:C:/w/x.pt") == ("ViT-B-32", "C:/w/x.pt")


class _CountingEncoder:
    """A deterministic fake model with a disk identity; counts the strings it had to encode."""

    @staticmethod
    def make(key="fake-1", dim=4):
        from sas_engine.teachers.text import TextEncoder

        class Enc(TextEncoder):
            name, disk_key = "fake", key

            def __init__(self):
                super().__init__()
                self.dim, self.seen = dim, []

            def _encode_batch(self, texts):
                self.seen += texts
                return torch.stack([torch.tensor([len(t), sum(map(ord, t)) % 97, 1.0, 2.0][:dim]) for t in texts])

        return Enc()


def test_persistent_cache_spares_the_model_in_a_later_process(tmp_path, monkeypatch):
    from sas_engine.teachers.text import text_cache_path

    monkeypatch.setenv("SAS_TEXT_CACHE", str(tmp_path / "tc"))
    a = _CountingEncoder.make()
    first = a.encode_persistent(["a chair in a scene", "a sofa in a scene"])
    assert a.seen == ["a chair in a scene", "a sofa in a scene"] and text_cache_path("fake-1").is_file()
    b = _CountingEncoder.make()  # a fresh process: empty memory cache
    again = b.encode_persistent(["a sofa in a scene", "a chair in a scene"])
    assert b.seen == []  # both came from disk
    torch.testing.assert_close(again, first[[1, 0]], rtol=0, atol=0)
    c = _CountingEncoder.make()
    c.encode_persistent(["a chair in a scene", "a lamp in a scene"])
    assert c.seen == ["a lamp in a scene"]  # only the new string is encoded, then added to the file
    assert _CountingEncoder.make().encode_persistent(["a lamp in a scene"]).shape == (1, 4)


def test_persistent_cache_ignores_damaged_or_foreign_files(tmp_path, monkeypatch):
    from sas_engine.teachers.text import text_cache_path

    monkeypatch.setenv("SAS_TEXT_CACHE", str(tmp_path / "tc"))
    p = text_cache_path("fake-1")
    p.parent.mkdir(parents=True)
    p.write_bytes(b"not a torch file")
    a = _CountingEncoder.make()
    a.encode_persistent(["x"])
    assert a.seen == ["x"]  # damaged file: re-encoded and rewritten
    other = _CountingEncoder.make(key="fake-2")  # another model never reads fake-1's vectors
    other.encode_persistent(["x"])
    assert other.seen == ["x"]
    b = _CountingEncoder.make()
    b.encode_persistent(["x"])
    assert b.seen == []


def test_string_cache_is_a_bounded_lru_with_the_same_embeddings():
    from sas_engine.teachers.text import DEFAULT_MAX_CACHE, TextEncoder

    class Enc(TextEncoder):
        name, dim = "fake-lru", 4

        def __init__(self, max_cache=DEFAULT_MAX_CACHE):
            super().__init__(max_cache)
            self.seen = []

        def _encode_batch(self, texts):
            self.seen += texts
            return torch.stack([torch.tensor([len(t), sum(map(ord, t)) % 97, 1.0, 2.0]) for t in texts])

    assert Enc().max_cache == DEFAULT_MAX_CACHE == 4096
    with pytest.raises(ValueError, match="max_cache"):
        Enc(0)
    ref = Enc()  # the default bound: never reached here
    enc = Enc(max_cache=8)
    for k in range(200):
        out = enc.encode([f"query {k}", "a chair in a scene"])
        assert out.shape == (2, 4) and enc.cache_size() <= 8
        torch.testing.assert_close(out, ref.encode([f"query {k}", "a chair in a scene"]), rtol=0, atol=0)
    assert enc.seen.count("a chair in a scene") == 1  # used on every call: never the least recently used
    assert enc.cache_size() == 8 and ref.cache_size() == 201
    n = len(enc.seen)
    enc.encode(["query 199"])  # still cached
    assert len(enc.seen) == n
    again = enc.encode(["query 0"])  # evicted long ago: encoded again, to the same embedding
    assert enc.seen[-1] == "query 0"
    torch.testing.assert_close(again, ref.encode(["query 0"]), rtol=0, atol=0)
    many = [f"long list {k}" for k in range(30)]  # one call with more strings than the cache holds
    torch.testing.assert_close(enc.encode(many + many[:2]), ref.encode(many + many[:2]), rtol=0, atol=0)
    assert enc.cache_size() == 8
