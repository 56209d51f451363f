"""Write the packaged MiniLM's shipped text-embedding table, ``checkpoints/text/<disk_key>.pt``.

It holds what a cold demo build encodes, computed here by the model itself: the prompts of the demo's label set
(``a {name} in a scene``), those of the compact mask teacher's vocabulary and every Model-Alignment-via-Text sentence
its captioner can give (:func:`sas_engine.teachers.mat.mask_cue_sentences`: 2,880 for its 20 labels). With it a
cold build's processes never load the text model (about 10 s of one core each); a string that is not in it is
encoded by the model as before. Rerun after changing the mask teacher's vocabulary, the captioner's adjectives or
the text model:

    python3 scripts/ship_text_embeddings.py
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def demo_texts() -> list[str]:
    """The strings the shipped table holds, in a fixed order."""
    from sas_engine.labels import PROMPT_SCENE, get_label_set
    from sas_engine.teachers.compact import CHECKPOINT_DIR, read_compact
    from sas_engine.teachers.mat import mask_cue_sentences

    meta = read_compact(CHECKPOINT_DIR / "seem_compact.pt", "compact_mask")["config"]
    template = meta.get("template", "a {} in a scene")
    vocab = list(meta["vocabulary"])
    texts = list(get_label_set("scannet20").prompts(PROMPT_SCENE)) + [template.format(v) for v in vocab]
    return list(dict.fromkeys(texts + mask_cue_sentences(vocab)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="default: checkpoints/text/<disk_key>.pt")
    args = ap.parse_args(argv)
    from sas_engine.teachers.text import MiniLMTextEncoder, write_shipped_texts

    texts = demo_texts()
    path = write_shipped_texts(MiniLMTextEncoder(), texts, args.out)
    print(f"{path}: {len(texts)} strings, {path.stat().st_size / 2**20:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
