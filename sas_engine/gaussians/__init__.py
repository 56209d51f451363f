"""3D Gaussian segmentation with integrated 2D priors (paper Sec. 4.4, Table 5).

* :mod:`.raster` - differentiable Gaussian rasterisation: pure PyTorch (CPU / any device) and a gsplat (CUDA) adapter;
* :mod:`.model` - the Gaussians' parameters and their initialisation from a scene's reconstruction;
* :mod:`.fit` - fitting to the RGB-D frames, with every ``holdout_every``-th frame held out;
* :mod:`.semantics` - lifting teacher features onto the Gaussians, SAS fusion, the distilled Gaussian encoder,
  rendered feature and label maps;
* :mod:`.pipeline` - the stages over the artefact store (``sas gaussians``);
* :mod:`.report` - the Table 5 analogue (``scripts/gaussian_report.py``).
"""
from .fit import GaussianFitConfig, split_frames
from .model import Gaussians
from .semantics import GaussianEncoderConfig

__all__ = ["GaussianFitConfig", "GaussianEncoderConfig", "Gaussians", "split_frames"]
