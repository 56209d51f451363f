"""MinkUNet18A (OpenScene / SAS 3D student) on the project's sparse layers, with ME-identical state_dict names.

Topology (docs/network.md): ``conv0p1s1`` (k5) -> four encoder stages (k2 s2 conv + BN + ReLU + 2 BasicBlocks) down to
stride 16 -> four decoder stages (k2 s2 transposed conv + BN + ReLU, concatenation ``[decoder, skip]``, 2 BasicBlocks)
-> ``final`` 1x1x1 conv without bias. ``MinkUNet18A`` has 289 state_dict entries and ~15.5M parameters at 512 outputs.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from ..sparse import SparseBatchNorm, SparseConv3d, SparseConvTranspose3d, SparseReLU, SparseTensor, cat


@dataclass(frozen=True)
class MinkUNetConfig:
    """Widths and depths of a MinkUNet (defaults: MinkUNet18A)."""

    init_dim: int = 32
    """Channels of the stem (``conv0p1s1``) and of the first strided conv."""
    planes: tuple[int, ...] = (32, 64, 128, 256, 128, 128, 96, 96)
    """Output channels of block1..block8 (and of the transposed convs convtr4..convtr7 = planes[4..7])."""
    layers: tuple[int, ...] = (2, 2, 2, 2, 2, 2, 2, 2)
    """BasicBlocks per stage block1..block8."""
    in_channels: int = 3
    """Input feature channels (OpenScene feeds all-ones, 3 channels)."""
    out_channels: int = 512
    """Output feature dim: 512 (LSeg / CLIP ViT-B), 768 (OpenSeg), 384 (the embedded MiniLM text space)."""
    stem_kernel: int = 5
    """Kernel size of ``conv0p1s1``."""


PRESETS: dict[str, MinkUNetConfig] = {
    "mink18a": MinkUNetConfig(),
    "mink18a_slim": MinkUNetConfig(init_dim=16, planes=(16, 32, 64, 128, 64, 64, 48, 48), out_channels=384),
}
"""Plain registry of network presets: the paper's MinkUNet18A and a half-width variant (same topology) for CPU."""


class BasicBlock(nn.Module):
    """conv3(stride) -> BN -> ReLU -> conv3 -> BN, + downsample(x), ReLU (attribute names as ME's ResNet BasicBlock)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, dilation: int = 1, downsample: nn.Module | None = None,
                 bn_momentum: float = 0.1):
        super().__init__()
        self.conv1 = SparseConv3d(inplanes, planes, 3, stride=stride, dilation=dilation)
        self.norm1 = SparseBatchNorm(planes, momentum=bn_momentum)
        self.conv2 = SparseConv3d(planes, planes, 3, stride=1, dilation=dilation)
        self.norm2 = SparseBatchNorm(planes, momentum=bn_momentum)
        self.relu = SparseReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: SparseTensor) -> SparseTensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.relu(out + residual)


class MinkUNet(nn.Module):
    """Sparse U-Net: ``forward(SparseTensor [M, in_channels]) -> SparseTensor [M, out_channels]`` on the input's rows."""

    def __init__(self, cfg: MinkUNetConfig = MinkUNetConfig()):
        super().__init__()
        if len(cfg.planes) != 8 or len(cfg.layers) != 8:
            raise ValueError("MinkUNet needs 8 planes and 8 layer counts")
        self.cfg = cfg
        self.in_channels, self.out_channels = cfg.in_channels, cfg.out_channels
        p, init = cfg.planes, cfg.init_dim
        self.inplanes = init
        self.conv0p1s1 = SparseConv3d(cfg.in_channels, init, cfg.stem_kernel)
        self.bn0 = SparseBatchNorm(init)
        self.conv1p1s2 = SparseConv3d(init, init, 2, stride=2)
        self.bn1 = SparseBatchNorm(init)
        self.block1 = self._make_layer(p[0], cfg.layers[0])
        self.conv2p2s2 = SparseConv3d(self.inplanes, self.inplanes, 2, stride=2)
        self.bn2 = SparseBatchNorm(self.inplanes)
        self.block2 = self._make_layer(p[1], cfg.layers[1])
        self.conv3p4s2 = SparseConv3d(self.inplanes, self.inplanes, 2, stride=2)
        self.bn3 = SparseBatchNorm(self.inplanes)
        self.block3 = self._make_layer(p[2], cfg.layers[2])
        self.conv4p8s2 = SparseConv3d(self.inplanes, self.inplanes, 2, stride=2)
        self.bn4 = SparseBatchNorm(self.inplanes)
        self.block4 = self._make_layer(p[3], cfg.layers[3])
        self.convtr4p16s2 = SparseConvTranspose3d(self.inplanes, p[4], 2, stride=2)
        self.bntr4 = SparseBatchNorm(p[4])
        self.inplanes = p[4] + p[2] * BasicBlock.expansion
        self.block5 = self._make_layer(p[4], cfg.layers[4])
        self.convtr5p8s2 = SparseConvTranspose3d(self.inplanes, p[5], 2, stride=2)
        self.bntr5 = SparseBatchNorm(p[5])
        self.inplanes = p[5] + p[1] * BasicBlock.expansion
        self.block6 = self._make_layer(p[5], cfg.layers[5])
        self.convtr6p4s2 = SparseConvTranspose3d(self.inplanes, p[6], 2, stride=2)
        self.bntr6 = SparseBatchNorm(p[6])
        self.inplanes = p[6] + p[0] * BasicBlock.expansion
        self.block7 = self._make_layer(p[6], cfg.layers[6])
        self.convtr7p2s2 = SparseConvTranspose3d(self.inplanes, p[7], 2, stride=2)
        self.bntr7 = SparseBatchNorm(p[7])
        self.inplanes = p[7] + init
        self.block8 = self._make_layer(p[7], cfg.layers[7])
        self.final = SparseConv3d(p[7] * BasicBlock.expansion, cfg.out_channels, 1)
        self.relu = SparseReLU(inplace=True)
        self.weight_initialization()

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        downsample = None
        if self.inplanes != planes * BasicBlock.expansion:
            downsample = nn.Sequential(SparseConv3d(self.inplanes, planes * BasicBlock.expansion, 1),
                                       SparseBatchNorm(planes * BasicBlock.expansion))
        layers = [BasicBlock(self.inplanes, planes, downsample=downsample)]
        self.inplanes = planes * BasicBlock.expansion
        layers += [BasicBlock(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def weight_initialization(self) -> None:
        """Kaiming normal (fan_out, relu) on every kernel; BN weight 1, bias 0 (OpenScene's init)."""
        for m in self.modules():
            if isinstance(m, (SparseConv3d, SparseConvTranspose3d)):
                nn.init.kaiming_normal_(m.kernel, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, SparseBatchNorm):
                nn.init.constant_(m.bn.weight, 1)
                nn.init.constant_(m.bn.bias, 0)

    def forward(self, x: SparseTensor) -> SparseTensor:
        out_p1 = self.relu(self.bn0(self.conv0p1s1(x)))
        out = self.relu(self.bn1(self.conv1p1s2(out_p1)))
        out_b1p2 = self.block1(out)
        out = self.relu(self.bn2(self.conv2p2s2(out_b1p2)))
        out_b2p4 = self.block2(out)
        out = self.relu(self.bn3(self.conv3p4s2(out_b2p4)))
        out_b3p8 = self.block3(out)
        out = self.relu(self.bn4(self.conv4p8s2(out_b3p8)))
        out = self.block4(out)
        out = self.relu(self.bntr4(self.convtr4p16s2(out)))
        out = self.block5(cat(out, out_b3p8))
        out = self.relu(self.bntr5(self.convtr5p8s2(out)))
        out = self.block6(cat(out, out_b2p4))
        out = self.relu(self.bntr6(self.convtr6p4s2(out)))
        out = self.block7(cat(out, out_b1p2))
        out = self.relu(self.bntr7(self.convtr7p2s2(out)))
        out = self.block8(cat(out, out_p1))
        return self.final(out)


def MinkUNet18A(in_channels: int = 3, out_channels: int = 512) -> MinkUNet:
    """The paper's 3D network (OpenScene's MinkUNet18A): 289 state_dict entries, ~15.5M parameters at 512 outputs."""
    return MinkUNet(MinkUNetConfig(in_channels=in_channels, out_channels=out_channels))


def MinkUNet18ASlim(in_channels: int = 3, out_channels: int = 384) -> MinkUNet:
    """Half-width MinkUNet18A (stem 16, planes halved, same topology and key names) for the CPU demo."""
    cfg = PRESETS["mink18a_slim"]
    return MinkUNet(MinkUNetConfig(init_dim=cfg.init_dim, planes=cfg.planes, layers=cfg.layers, in_channels=in_channels,
                                   out_channels=out_channels))


def build_model(preset: str = "mink18a", in_channels: int = 3, out_channels: int | None = None) -> MinkUNet:
    """Build a network preset by name (``out_channels`` overrides the preset's)."""
    if preset not in PRESETS:
        from ..errors import SASInputError
        raise SASInputError(None, f"unknown network preset {preset!r}; known: {', '.join(sorted(PRESETS))}")
    cfg = PRESETS[preset]
    return MinkUNet(MinkUNetConfig(init_dim=cfg.init_dim, planes=cfg.planes, layers=cfg.layers, in_channels=in_channels,
                                   out_channels=cfg.out_channels if out_channels is None else out_channels,
                                   stem_kernel=cfg.stem_kernel))
