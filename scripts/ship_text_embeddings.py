"""Write the packaged MiniLM's shipped text-embedding table, ``checkpoints/text/<disk_key>.pt``.

It holds what a cold demo build encodes (:func:`sas_engine.teachers.compact.shipped_text_strings`), computed here
by the model itself: the prompts of the demo's label set (``a {name} in a scene``), those of the compact mask
teacher's vocabulary and every Model-Alignment-via-Text sentence its captioner can give
(:func:`sas_engine.teachers.mat.mask_cue_sentences`: 2,880 for its 20 labels). With it a
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None, help="default: checkpoints/text/<disk_key>.pt")
    args = ap.parse_args(argv)
    from sas_engine.teachers.compact import shipped_text_strings
    from sas_engine.teachers.text import MiniLMTextEncoder, write_shipped_texts

    texts = shipped_text_strings()
    path = write_shipped_texts(MiniLMTextEncoder(), texts, args.out)
    print(f"{path}: {len(texts)} strings, {path.stat().st_size / 2**20:.2f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
