"""``sas capability``: synthesize images per class, score the teachers on them, store the capability table + chart."""
from __future__ import annotations

from .common import add_store_arg

HELP = "build the annotation-free capability table (teachers x classes) from synthesized images"


def add_arguments(p) -> None:
    p.add_argument("--synth", choices=("synthetic", "sd"), default="synthetic",
                   help="image synthesizer: the synthetic world's object renders (exact masks) or Stable Diffusion + SAM")
    p.add_argument("--teachers", default="lseg_compact,seem_compact",
                   help="comma-separated teacher registry names (default: the shipped lseg_compact,seem_compact)")
    p.add_argument("--m", type=int, default=10, help="images per class (release: 50)")
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
    g = p.add_argument_group("synthetic world")
    g.add_argument("--size", default="320x240", help="render size WxH")
    g.add_argument("--context", choices=("plain", "cluttered"), default="plain", help="object alone or in a furnished corner")
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
        synth = build_synthesizer("synthetic", size=(w, h), context=args.context)
        cfg = {"synth": "synthetic", "size": [w, h], "context": args.context}
    # the synthetic world renders vocabulary classes by name; SD prompts the prompt word ("other" for otherfurniture)
    asked = list(labels.names) if args.synth == "synthetic" else words
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
