"""Distillation losses of SAS (docs/method.md section 6), written for per-point tensors.

All functions take per-point 3D features ``f3d`` [N, C] (the network output mapped back to points), a validity mask
[N] (points with a fused 2D feature) and superpoint ids [N] (int64, any values: they are compacted internally).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def compact_ids(ids: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Map arbitrary int ids to 0..S-1 (sorted order). Returns (compact ids [N], S)."""
    uniq, inv = torch.unique(ids, return_inverse=True)
    return inv, int(uniq.numel())


def segment_mean(x: torch.Tensor, seg: torch.Tensor, num: int, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of rows of ``x`` [N, C] per segment ``seg`` [N] (0..num-1), optionally only rows with ``weight`` True.

    Segments without any counted row get a zero row. Differentiable w.r.t. ``x``.
    """
    w = torch.ones(x.shape[0], device=x.device, dtype=x.dtype) if weight is None else weight.to(x.dtype)
    s = torch.zeros(num, x.shape[1], device=x.device, dtype=x.dtype).index_add_(0, seg, x * w[:, None])
    c = torch.zeros(num, device=x.device, dtype=x.dtype).index_add_(0, seg, w)
    return s / c.clamp_min(1)[:, None]


def superpoint_targets(target: torch.Tensor, valid: torch.Tensor, seg: torch.Tensor, num: int):
    """Superpoint-averaged 2D targets: (per-superpoint mean [S, C], per-point target [N, C], superpoint has target [S])."""
    sp = segment_mean(target.float(), seg, num, valid)
    has = torch.zeros(num, dtype=torch.bool, device=seg.device)
    has[seg[valid]] = True
    return sp, sp[seg], has


def cosine_loss(a: torch.Tensor, b: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean of 1 - cos(a_i, b_i) over rows (0 for no rows); with ``weight`` [rows] the weighted mean."""
    if a.shape[0] == 0:
        return a.sum() * 0
    d = 1 - F.cosine_similarity(a, b, dim=-1, eps=1e-8)
    if weight is None:
        return d.mean()
    w = weight.to(d.dtype)
    return (d * w).sum() / w.sum().clamp_min(1e-8)


def class_balance_weights(targets: list[tuple[torch.Tensor, torch.Tensor]], text: torch.Tensor, power: float,
                          max_ratio: float = 10.0) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Per-point loss weights that rebalance the 2D targets' classes, without annotations.

    Each valid point's pseudo class is the argmax of its fused 2D target against the label set's text embeddings
    ``text`` [K, C] (what the 2D fusion itself predicts there). Class k weighs ``(n_k / n)^-power`` over all scenes'
    valid points, capped at ``max_ratio`` times the smallest class weight and scaled so the mean point weight is 1;
    ``power`` 0 gives every point weight 1 (the paper's loss). ``targets``: (target [N, C], valid [N]) per scene.
    Returns (float32 weights [N] per scene, 0 where invalid; class weights [K]).
    """
    t = F.normalize(text.float(), dim=-1)
    labels, counts = [], torch.zeros(t.shape[0], dtype=torch.float64)
    for target, valid in targets:
        lab = torch.full((target.shape[0],), -1, dtype=torch.int64)
        rows = valid.nonzero(as_tuple=True)[0]
        for lo in range(0, rows.numel(), 65536):
            r = rows[lo:lo + 65536]
            lab[r] = (target[r].float() @ t.T).argmax(1)
        counts += torch.bincount(lab[rows], minlength=t.shape[0]).double()
        labels.append(lab)
    total = counts.sum().clamp_min(1)
    w = torch.where(counts > 0, (counts / total).clamp_min(1e-12) ** -power, torch.zeros_like(counts))
    if (w > 0).any():
        w = torch.minimum(w, w[w > 0].min() * max_ratio)
        w = w / ((w * counts).sum() / total)
    w = w.float()
    return [torch.where(lab >= 0, w[lab.clamp_min(0)], torch.zeros(())) for lab in labels], w


def label_kd_loss(f3d: torch.Tensor, target: torch.Tensor, text: torch.Tensor, temperature: float,
                  weight: torch.Tensor | None = None, target_temperature: float = 0.0) -> torch.Tensor:
    """Knowledge distillation over the label set: KL(softmax(t . T / temperature) || softmax(f . T / temperature))
    per row with L2-normalised target ``t``, feature ``f`` and class texts ``T`` [K, C], (weighted) mean over rows.
    ``target_temperature`` > 0 sharpens (or flattens) the target's softmax with its own temperature.

    The cosine loss weighs every direction of the 384-d feature alike, so a small angle between two close class
    texts (curtain and shower curtain: cosine 0.88) costs almost nothing to get wrong; this term is measured in
    exactly those directions."""
    if f3d.shape[0] == 0:
        return f3d.sum() * 0
    t = F.normalize(text.float(), dim=-1)
    p_t = F.softmax(F.normalize(target.float(), dim=-1) @ t.T / (target_temperature or temperature), dim=-1)
    log_s = F.log_softmax(F.normalize(f3d, dim=-1) @ t.T / temperature, dim=-1)
    kl = (p_t * (p_t.clamp_min(1e-12).log() - log_s)).sum(-1)
    if weight is None:
        return kl.mean()
    w = weight.to(kl.dtype)
    return (kl * w).sum() / w.sum().clamp_min(1e-8)


def stage1_loss(f3d, target, valid, seg, *, use_superpoint: bool = True, weight: torch.Tensor | None = None,
                text: torch.Tensor | None = None, kd_weight: float = 0.0,
                temperature: float = 0.1) -> tuple[torch.Tensor, dict]:
    """Stage 1: point cosine loss (+ superpoint cosine loss).

    Without superpoints this is OpenScene's loss: 1 - cos(F3D, F2D) on valid points. With superpoints (SAS):
    L_p = 1 - cos(F3D, F_SP^2D) on points of superpoints that have a target, and
    L_sp = 1 - cos(mean_sp(F3D), f_SP^2D) over those superpoints; L = L_p + L_sp.
    ``weight`` [N] (optional, :func:`class_balance_weights`): per-point weights of the point term; a superpoint
    weighs the mean weight of its valid points. ``kd_weight`` > 0 adds :func:`label_kd_loss` against the class
    texts ``text`` on the same points and targets as the point term.
    """
    kd = kd_weight > 0 and text is not None
    if not use_superpoint:
        w = None if weight is None else weight[valid]
        lp = cosine_loss(f3d[valid], target[valid].float(), w)
        parts = {"loss_point": float(lp.detach())}
        if kd:
            lk = label_kd_loss(f3d[valid], target[valid], text, temperature, w)
            lp, parts["loss_kd"] = lp + kd_weight * lk, float(lk.detach())
        return lp, parts
    cseg, num = compact_ids(seg)
    sp_t, pt_t, has = superpoint_targets(target, valid, cseg, num)
    counted = has[cseg]
    sp_w = None
    if weight is not None:
        sp_w = segment_mean(weight.float()[:, None], cseg, num, valid)[:, 0]
    pw = None if sp_w is None else sp_w[cseg][counted]
    lp = cosine_loss(f3d[counted], pt_t[counted], pw)
    sp_f = segment_mean(f3d, cseg, num)
    lsp = cosine_loss(sp_f[has], sp_t[has], None if sp_w is None else sp_w[has])
    parts = {"loss_point": float(lp.detach()), "loss_superpoint": float(lsp.detach())}
    if kd:
        lk = label_kd_loss(f3d[counted], pt_t[counted], text, temperature, pw)
        lp, parts["loss_kd"] = lp + kd_weight * lk, float(lk.detach())
    return lp + lsp, parts


def confident_mask(scores: torch.Tensor, labels: torch.Tensor, keep: float) -> torch.Tensor:
    """Rows whose pseudo label is among the ``keep`` fraction most confident of its class.

    Confidence is the margin between the best and the second-best class score of a row; the quantile is taken per
    pseudo class, so rare classes keep their most confident rows instead of being filtered out by the frequent ones.
    ``keep >= 1`` keeps every row (the paper's loss).
    """
    if keep >= 1.0 or scores.shape[0] == 0 or scores.shape[1] < 2:
        return torch.ones(scores.shape[0], dtype=torch.bool, device=scores.device)
    top = scores.topk(2, dim=1).values
    margin = top[:, 0] - top[:, 1]
    mask = torch.zeros(scores.shape[0], dtype=torch.bool, device=scores.device)
    for c in torch.unique(labels).tolist():
        rows = (labels == c).nonzero(as_tuple=True)[0]
        n_keep = max(1, int(math.ceil(keep * rows.numel())))
        best = margin[rows].topk(n_keep).indices
        mask[rows[best]] = True
    return mask


def pseudo_labels(history: torch.Tensor, seg: torch.Tensor, text: torch.Tensor,
                  keep: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stage-2 pseudo labels from the feature history H [N, C] and class text embeddings T [K, C]:
    (argmax(H . T) per point [N], argmax(mean_sp(H) . T) per compacted superpoint [S], and the masks [N] / [S] of the
    labels kept by :func:`confident_mask` with ``keep``)."""
    cseg, num = compact_ids(seg)
    h = history.float()
    s_point = h @ text.T
    s_sp = segment_mean(h, cseg, num) @ text.T
    point, sp = s_point.argmax(1), s_sp.argmax(1)
    return point, sp, confident_mask(s_point, point, keep), confident_mask(s_sp, sp, keep)


def stage2_loss(f3d, seg, text, history, *, temperature: float = 0.1, keep: float = 1.0,
                soft_temperature: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Stage 2, temporal-ensembling self-distillation:
    CE(F3D . T, pseudo_point) + CE(mean_sp(F3D) . T, pseudo_sp), with pseudo labels from the history.

    Logits use L2-normalised features and text divided by ``temperature`` (the paper leaves the scale open,
    docs/method.md section 6; cosine logits in [-1, 1] would give almost no gradient). ``keep`` < 1 counts only the
    most confident pseudo labels of each class (see :func:`confident_mask`); 1 counts all of them, as the paper does.

    ``soft_temperature`` > 0 replaces the hard labels by the history's whole class distribution (softmax of its
    cosines to ``text`` at that temperature): KL(p_H || p_F3D) on every point and on every superpoint's mean, so
    an uncertain history point teaches its uncertainty instead of its argmax (``keep`` is then unused). The loss
    keeps the same part names, so logs compare across both forms.
    """
    cseg, num = compact_ids(seg)
    sp_f = segment_mean(f3d, cseg, num)
    if soft_temperature > 0:
        h = history.float()
        l_pt = label_kd_loss(f3d, h, text, temperature, target_temperature=soft_temperature)
        l_sp = label_kd_loss(sp_f, segment_mean(h, cseg, num), text, temperature,
                             target_temperature=soft_temperature)
        return l_pt + l_sp, {"loss_ce_point": float(l_pt.detach()), "loss_ce_superpoint": float(l_sp.detach())}
    p_point, p_sp, m_point, m_sp = pseudo_labels(history, seg, text, keep)
    logits = F.normalize(f3d, dim=-1) @ text.T / temperature
    l_pt = F.cross_entropy(logits[m_point], p_point[m_point])
    l_sp = F.cross_entropy(F.normalize(sp_f[m_sp], dim=-1) @ text.T / temperature, p_sp[m_sp])
    return l_pt + l_sp, {"loss_ce_point": float(l_pt.detach()), "loss_ce_superpoint": float(l_sp.detach())}


def ema_update(history: torch.Tensor, f3d: torch.Tensor, alpha: float) -> torch.Tensor:
    """H <- alpha * H + (1 - alpha) * F3D (returns the new history, same dtype as ``history``)."""
    return (alpha * history.float() + (1 - alpha) * f3d.detach().float()).to(history.dtype)
