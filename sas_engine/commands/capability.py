"""``sas capability``: synthesize images per class, score the teachers on them, store the capability table + chart."""
from __future__ import annotations

from .common import add_store_arg

HELP = "build the annotation-free capability table (teachers x classes) from synthesized images"


def add_arguments(p) -> None:
    p.add_argument("--synth", choices=("rooms", "synthetic", "sd"), default="rooms",
                   help="image synthesizer: generated rooms framed on an instance of the class (default; exact "
                        "instance masks), the object alone on a plain background (synthetic), or Stable "
                        "Diffusion + SAM")
    from ..teachers import DEMO_TEACHERS

    p.add_argument("--teachers", default=",".join(DEMO_TEACHERS),
                   help=f"comma-separated teacher registry names (default: the shipped {','.join(DEMO_TEACHERS)})")
    p.add_argument("--m", type=int, default=50, help="images per class (default: the release's 50)")
    p.add_argument("--seed", type=int, default=0, help="seed of the first image; image i uses seed + i")
    p.add_argument("--vocab", default="scannet20", help="label set used as vocabulary (its prompt words are synthesized)")
    p.add_argument("--exclude", default=None,
                   help="comma-separated class names not to synthesize (their capability stays unknown and fusion fills "
                        "it with the teacher's mean); default: otherfurniture for sd (as the release), none otherwise")
    p.add_argument("--mode", choices=("pooled", "per_image"), default="pooled",
                   help="IoU variant stored as the capability: pooled (release, default) or per_image (paper Eq. 3)")
    p.add_argument("--text-encoder", default=None, help="shared text encoder spec (default: packaged MiniLM)")
    p.add_argument("--linear-step", type=float, default=0.1, help="simplex grid step for the Linear baseline's weights")
    p.add_argument("--device", default="cpu", help="torch device (cpu or cuda)")
    p.add_argument("--ship", action="store_true",
                   help="build the table exactly as the pipeline does (its stamp, so the demo and `sas fuse` reuse "
                        "it) and copy it with its gallery into checkpoints/capability/, where fresh stores find it")
    g = p.add_argument_group("synthetic world")
    g.add_argument("--size", default="320x240", help="render size WxH")
    g = p.add_argument_group("Stable Diffusion")
    g.add_argument("--sd-model", default="", help="local diffusers Stable Diffusion folder")
    g.add_argument("--sam-checkpoint", default=None, help="local SAM checkpoint (.pth); without it the coarse mask is kept")
    g.add_argument("--prompt", default="capability",
                   help="capability (release), capability_paper, or a literal template with {}")
    g.add_argument("--steps", type=int, default=50, help="denoising steps")
    g.add_argument("--guidance", type=float, default=7.0, help="classifier-free guidance scale")
    g.add_argument("--image-size", type=int, default=512, help="SD image side")
    g.add_argument("--batch-size", type=int, default=1, help="SD images sampled together")
    add_store_arg(p)


def run(args) -> int:
    from ..capability import build_synthesizer, save_capability_table, score_capabilities
    from ..errors import SASInputError
    from ..labels import get_label_set
    from ..store import ArtefactStore
    from ..teachers import build_teacher, get_text_encoder

    if args.m < 1:
        raise SASInputError(None, f"--m must be >= 1, got {args.m}")
    names = [t.strip() for t in args.teachers.split(",") if t.strip()]
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
