"""The same sparse code on CUDA agrees with the CPU run (skipped without a GPU)."""
import pytest
import torch

from sas_engine.models import MinkUNet18ASlim
from sas_engine.sparse import SparseConv3d, SparseConvTranspose3d, forward_points, make_sparse_tensor

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


def test_conv_and_model_cuda_match_cpu():
    torch.manual_seed(0)
    c = torch.cat([torch.randint(0, 3, (3000, 1)), torch.randint(-15, 15, (3000, 3))], 1).unique(dim=0)
    f = torch.randn(c.shape[0], 4, dtype=torch.float64)
    for mod in (SparseConv3d(4, 3, 3), SparseConv3d(4, 3, 5), SparseConv3d(4, 3, 2)):
        mod = mod.double()
        cpu = mod(make_sparse_tensor(f, c)).features
        gpu = mod.cuda()(make_sparse_tensor(f.cuda(), c.cuda())).features
        torch.testing.assert_close(gpu.cpu(), cpu)
        mod.cpu()
    down, up = SparseConv3d(4, 5, 2, stride=2).double(), SparseConvTranspose3d(5, 2, 2, stride=2).double()
    cpu = up(down(make_sparse_tensor(f, c))).features
    gpu = up.cuda()(down.cuda()(make_sparse_tensor(f.cuda(), c.cuda()))).features
    torch.testing.assert_close(gpu.cpu(), cpu)
    model = MinkUNet18ASlim(out_channels=16).double().eval()
    cpu = forward_points(model, c, torch.ones(c.shape[0], 3, dtype=torch.float64))
    gpu = forward_points(model.cuda(), c.cuda(), torch.ones(c.shape[0], 3, dtype=torch.float64, device="cuda"))
    torch.testing.assert_close(gpu.cpu(), cpu)
    x = make_sparse_tensor(torch.ones(c.shape[0], 3, dtype=torch.float64, device="cuda"), c.cuda())
    model.train()(x).features.square().mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
