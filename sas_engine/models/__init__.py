"""3D networks: MinkUNet18A (the SAS / OpenScene student) and its slim CPU preset, plus checkpoint loading."""
from .checkpoint import extract_state_dict, load_mink_checkpoint
from .mink_unet import PRESETS, BasicBlock, MinkUNet, MinkUNet18A, MinkUNet18ASlim, MinkUNetConfig, build_model

__all__ = ["PRESETS", "BasicBlock", "MinkUNet", "MinkUNet18A", "MinkUNet18ASlim", "MinkUNetConfig", "build_model",
           "extract_state_dict", "load_mink_checkpoint"]
