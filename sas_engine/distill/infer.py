"""Per-point 3D features from a trained student: voxelise, forward, devoxelise (optionally with test-time augmentation)."""
from __future__ import annotations

import numpy as np
import torch

from ..geometry.voxelize import AugmentConfig, voxelize

COLOR_INPUT_CHANNELS = 4
"""Input width of a colour student (``DistillConfig.input_color``, OpenScene's ``input_color``): per voxel
``[1, r - 0.5, g - 0.5, b - 0.5]`` with the voxel's mean colour in [0, 1]. A geometry-only student (the paper's)
reads 3 all-ones channels."""


def uses_color(model: torch.nn.Module) -> bool:
    """True when ``model`` reads per-voxel colours (its stem has :data:`COLOR_INPUT_CHANNELS` inputs)."""
    inner = getattr(model, "module", model)  # DistributedDataParallel wraps the network
    return getattr(inner, "in_channels", 3) == COLOR_INPUT_CHANNELS


def voxel_colors(colors: list[np.ndarray], inverses: list[torch.Tensor], num_voxels: int) -> torch.Tensor:
    """Mean colour per voxel [M, 3] (float32, [0, 1]) of a batch: ``colors`` float [N_b, 3] in [0, 1] (or uint8 RGB)
    per scene and the point -> batch-row maps of :func:`batch_voxels`."""
    acc = torch.zeros(num_voxels, 3, dtype=torch.float32)
    cnt = torch.zeros(num_voxels, dtype=torch.float32)
    for c, inv in zip(colors, inverses):
        c = torch.as_tensor(np.asarray(c))
        c = c.float() / 255.0 if c.dtype == torch.uint8 else c.float()
        acc.index_add_(0, inv, c)
        cnt.index_add_(0, inv, torch.ones(inv.shape[0]))
    return acc / cnt.clamp_min(1)[:, None]


def batch_voxels(point_sets: list[np.ndarray], voxel_size: float, augment: AugmentConfig | None,
                 seeds: list[int | None]) -> tuple[torch.Tensor, list[torch.Tensor], list[int]]:
    """Voxelise several point sets into one batched coordinate tensor.

    Returns (coords int32 [M, 4] with the batch index first, per-scene inverse maps point -> row of the batch,
    voxel counts per scene).
    """
    coords, inverses, counts, offset = [], [], [], 0
    for b, (pts, seed) in enumerate(zip(point_sets, seeds)):
        vox = voxelize(pts, voxel_size, augment=augment, seed=seed)
        c = torch.as_tensor(np.asarray(vox.coords), dtype=torch.int32)
        coords.append(torch.cat([torch.full((c.shape[0], 1), b, dtype=torch.int32), c], 1))
        inverses.append(torch.as_tensor(np.asarray(vox.inverse), dtype=torch.int64) + offset)
        counts.append(c.shape[0])
        offset += c.shape[0]
    return torch.cat(coords, 0), inverses, counts


def forward_voxels(model: torch.nn.Module, coords: torch.Tensor, device: torch.device | str,
                   colors: torch.Tensor | None = None) -> torch.Tensor:
    """Run the student on voxel coordinates. Returns [M, C].

    A geometry-only student gets all-ones input features (docs/method.md section 6); a colour student
    (:func:`uses_color`) gets ``[1, colour - 0.5]`` from ``colors`` [M, 3] in [0, 1] (:func:`voxel_colors`).
    """
    from ..errors import SASInputError
    from ..sparse import forward_points

    in_ch = getattr(getattr(model, "module", model), "in_channels", 3)
    if uses_color(model):
        if colors is None:
            raise SASInputError(None, "this student reads point colours (input_color); none were given")
        feats = torch.cat([torch.ones(coords.shape[0], 1), colors.float() - 0.5], 1).to(device)
    else:
        feats = torch.ones(coords.shape[0], in_ch, device=device)
    return forward_points(model, coords.to(device), feats)


@torch.no_grad()
def infer_points(model: torch.nn.Module, points: np.ndarray, voxel_size: float, *, device="cpu", tta: int = 0,
                 seed: int = 0, colors: np.ndarray | None = None) -> torch.Tensor:
    """Per-point float16 [N, C] features of ``points`` [N, 3] from ``model`` in eval mode.

    ``colors`` (uint8 RGB [N, 3]) is read only by a colour student (:func:`uses_color`), which requires it.

    ``tta`` > 0 averages the L2-normalised outputs of that many randomly rotated / scaled copies with the plain pass
    (OpenScene averages over 5 augmented passes).
    """
    was_training = model.training
    model.eval()
    try:
        passes = [(None, None)] + [(AugmentConfig(), seed + i) for i in range(tta)]
        acc = None
        for aug, s in passes:
            coords, inv, _ = batch_voxels([points], voxel_size, aug, [s])
            cols = voxel_colors([colors], inv, coords.shape[0]) if colors is not None and uses_color(model) else None
            out = forward_voxels(model, coords, device, cols)[inv[0].to(device)].float()
            if tta:
                out = torch.nn.functional.normalize(out, dim=-1)
            acc = out if acc is None else acc + out
        return (acc / len(passes)).to(torch.float16).cpu()
    finally:
        model.train(was_training)


def load_student(path, model: str | None = None, device="cpu") -> tuple[torch.nn.Module, dict]:
    """Load a student for inference from a trainer checkpoint (records its preset, width and voxel size) or from an
    OpenScene/SAS checkpoint (``state_dict`` with ``net3d.`` / ``module.`` prefixes: pass ``model``; the output width is
    read from ``final.kernel``). Returns (model in eval mode, metadata dict with run / voxel_size when known)."""
    from ..errors import SASInputError
    from ..io.files import torch_load
    from ..models.checkpoint import extract_state_dict, load_mink_checkpoint
    from ..models.mink_unet import build_model

    ck = torch_load(path, what="student checkpoint")
    sd = extract_state_dict(ck, path)
    cfg = ck.get("config", {}) if isinstance(ck, dict) and isinstance(ck.get("config"), dict) else {}
    name = model or cfg.get("model")
    if not name:
        raise SASInputError(path, "checkpoint does not record its model preset: pass --model (mink18a or mink18a_slim)")
    final = sd.get("final.kernel")
    if final is None:
        raise SASInputError(path, "checkpoint has no final.kernel: not a MinkUNet student")
    stem = sd.get("conv0p1s1.kernel")
    in_ch = int(stem.shape[1]) if stem is not None and stem.dim() == 3 else 3
    net = build_model(name, in_channels=in_ch, out_channels=int(final.shape[-1]))
    load_mink_checkpoint(net, sd)
    meta = {"run": cfg.get("run"), "voxel_size": cfg.get("voxel_size"), "model": name,
            "input_color": in_ch == COLOR_INPUT_CHANNELS}
    return net.to(device).eval(), meta
