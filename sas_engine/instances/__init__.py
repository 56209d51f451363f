"""Open-vocabulary 3D instance segmentation and "where is it?" answers (paper Sec. 4.4, Table 6).

* :mod:`.proposals` - class-agnostic proposals: superpoints grouped by the mask teacher's regions across views and by
  their features;
* :mod:`.adapters` - masks made elsewhere (ScanNet benchmark / Mask3D ``.txt`` submissions, OpenMask3D ``.pt`` /
  ``.npy`` arrays) and the benchmark's instance submission writer;
* :mod:`.labelling` - open-vocabulary labelling of proposals with per-point features, and :func:`find_instances`,
  the JSON query API;
* :mod:`.metrics` - the ScanNet instance benchmark protocol (AP, AP50, AP25);
* :mod:`.pipeline` - the stages over the artefact store (``sas instances``, ``sas eval --task instances``).
"""
from .labelling import LabelConfig, QueryConfig, find_instances
from .metrics import InstanceEvalConfig, InstancePrediction, evaluate_instances, gt_instance_ids
from .proposals import ProposalConfig, Proposals

__all__ = ["LabelConfig", "QueryConfig", "find_instances", "InstanceEvalConfig", "InstancePrediction",
           "evaluate_instances", "gt_instance_ids", "ProposalConfig", "Proposals"]
