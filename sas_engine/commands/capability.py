"""``sas capability``: synthesize images per class, score the teachers on them, store the capability table + chart."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from ..teachers import DEMO_TEACHERS
from .common import DEFAULT_STORE


@dataclass
class Config:
    """Build the annotation-free capability table (teachers x classes) from synthesized images."""

    synth: Literal["rooms", "synthetic", "sd"] = "rooms"
    """Image synthesizer: generated rooms framed on an instance of the class (default; exact instance masks), the
    object alone on a plain background (synthetic), or Stable Diffusion + SAM (sd)."""
    teachers: tuple[str, ...] = DEMO_TEACHERS
    """Teacher registry names, comma-separated (default: the three shipped compact teachers)."""
    m: int = 50
    """Images per class (default: the release's 50)."""
    seed: int = 0
    """Seed of the first image; image i uses seed + i."""
    vocab: str = "scannet20"
    """Label set used as vocabulary (its prompt words are synthesized)."""
    exclude: Optional[str] = None
    """Comma-separated class names not to synthesize (their capability stays unknown and fusion fills it with the
    teacher's mean); default: otherfurniture for sd (as the release), none otherwise."""
    mode: Literal["pooled", "per_image"] = "pooled"
    """IoU variant stored as the capability: pooled (release, default) or per_image (paper Eq. 3)."""
    text_encoder: Optional[str] = None
    """Shared text encoder spec (default: packaged MiniLM)."""
    linear_step: float = 0.1
    """Simplex grid step for the Linear baseline's weights."""
    device: str = "cpu"
    """Torch device (cpu or cuda)."""
    ship: bool = False
    """Build the table exactly as the pipeline does (its stamp, so the demo and `sas fuse` reuse it) and copy it
    with its gallery into checkpoints/capability/, where fresh stores find it."""
    size: str = "320x240"
    """Synthetic world (rooms, synthetic): render size WxH."""
    sd_model: str = ""
    """Stable Diffusion: local diffusers Stable Diffusion folder."""
    sam_checkpoint: Optional[str] = None
    """Stable Diffusion: local SAM checkpoint (.pth); without it the coarse mask is kept."""
    prompt: str = "capability"
    """Stable Diffusion: capability (release), capability_paper, or a literal template with {}."""
    steps: int = 50
    """Stable Diffusion: denoising steps."""
    guidance: float = 7.0
    """Stable Diffusion: classifier-free guidance scale."""
    image_size: int = 512
    """Stable Diffusion: image side."""
    batch_size: int = 1
    """Stable Diffusion: images sampled together."""
    store: Path = DEFAULT_STORE
    """Artefact store folder ($SAS_STORE or <repo>/store)."""


def run(args) -> int:
    from ..capability import build_synthesizer, save_capability_table, score_capabilities
    from ..errors import SASInputError
    from ..labels import get_label_set
    from ..store import ArtefactStore
    from ..teachers import build_teacher, get_text_encoder

    if args.m < 1:
        raise SASInputError(None, f"--m must be >= 1, got {args.m}")
    names = list(args.teachers)
    if args.ship:
        return _ship(args, names)
    teachers = [build_teacher(n) for n in names]
    teachers = [t.to(args.device) if hasattr(t, "to") else t for t in teachers]
    labels = get_label_set(args.vocab)
    words = list(labels.prompt_names)
    exclude = args.exclude if args.exclude is not None else ("otherfurniture" if args.synth == "sd" else "")
    skip = {e.strip() for e in exclude.split(",") if e.strip()}
    keep = [k for k, n in enumerate(labels.names) if n not in skip and words[k] not in skip]
    if args.synth == "sd":
        synth = build_synthesizer("sd", model_dir=args.sd_model, sam_checkpoint=args.sam_checkpoint,
                                  device=args.device, prompt=args.prompt, steps=args.steps, guidance=args.guidance,
                                  image_size=args.image_size, batch_size=args.batch_size)
        cfg = {"synth": "sd", "model": args.sd_model, "sam": args.sam_checkpoint, "prompt": args.prompt,
               "steps": args.steps, "guidance": args.guidance, "image_size": args.image_size}
    else:
        try:
            w, h = (int(x) for x in args.size.lower().split("x"))
        except ValueError:
            raise SASInputError(None, f"--size must be WxH, got {args.size!r}") from None
        synth = build_synthesizer(args.synth, size=(w, h))
        cfg = {"synth": args.synth, "synth_version": synth.version, "size": [w, h]}
    # the synthetic world renders vocabulary classes by name; SD prompts the prompt word ("other" for otherfurniture)
    asked = list(labels.names) if getattr(synth, "by_class_name", False) else words
    images = synth.synthesize([asked[k] for k in keep], args.m, args.seed)
    for im in images:                       # synthesized over the kept classes -> vocabulary indices
        im.class_index = keep[im.class_index]
    enc = get_text_encoder(args.text_encoder, device=args.device)
    table = score_capabilities(teachers, images, words, enc, mode=args.mode, linear_step=args.linear_step)
    table.classes, table.words = list(labels.names), words
    cfg.update(teachers=names, m=args.m, seed=args.seed, vocab=args.vocab, mode=args.mode,
               text_encoder=args.text_encoder or "minilm", excluded=sorted(skip))
    jpath, ppath = save_capability_table(ArtefactStore(args.store), table, args.synth, config=cfg)
    width = max(len(c) for c in table.classes)
    print(f"{'class':<{width}}  " + "  ".join(f"{t:>14}" for t in table.teachers))
    for k, c in enumerate(table.classes):
        print(f"{c:<{width}}  " + "  ".join(f"{table.scores[i, k]:>14.3f}" for i in range(len(table.teachers))))
    if table.linear_weights is not None:
        print(f"Linear baseline weights {table.linear_weights} (synthesized-image mIoU {table.linear_miou:.3f})")
    print(f"saved {jpath}\nsaved {ppath}")
    return 0


def _ship(args, names) -> int:
    """``--ship``: the pipeline's own table (:func:`sas_engine.pipeline.ensure_capability`), exported."""
    from ..capability.shipped import export_shipped_table
    from ..errors import SASInputError
    from ..pipeline import PipelineConfig, build_teachers, ensure_capability
    from ..store import ArtefactStore

    if args.synth == "sd" or args.size != "320x240" or args.exclude or args.vocab != "scannet20" \
            or args.linear_step != 0.1:
        raise SASInputError(None, "--ship builds the pipeline's table: only --synth rooms|synthetic, --teachers, --m, "
                                  "--seed, --mode, --text-encoder and --device apply")
    cfg = PipelineConfig(teachers=tuple(names), synthesizer=args.synth, capability_images=args.m,
                         capability_seed=args.seed, capability_mode=args.mode, text_encoder=args.text_encoder,
                         device=args.device)
    store = ArtefactStore(args.store)
    table = ensure_capability(store, build_teachers(cfg), cfg)
    path = export_shipped_table(store, f"capability.{args.synth}")
    print(f"{len(table.teachers)} teachers x {len(table.classes)} classes; shipped {path} "
          f"(+ {len(table.images)} gallery images)")
    return 0
