"""Evaluation: segmentation metrics, zero-shot labelling of per-point features, reports.

* :mod:`.metrics` - confusion matrix (misses in an extra column), per-class IoU / accuracy, mIoU / mAcc under the
  ``"present"`` or ``"openscene"`` convention;
* :mod:`.zeroshot` - :class:`FeatureSet`, :func:`predict_labels`, :func:`evaluate_features`, :func:`text_embeddings`
  (2D-3D ensemble and test-time augmentation as FeatureSet combine rules);
* :mod:`.evaluate` - :func:`evaluate_sources` over scenes and named sources (store artefacts via :func:`store_source`);
* :mod:`.report` - Markdown table, JSON and PNG plots.
"""
from .evaluate import evaluate_sources, store_source
from .metrics import (CONVENTIONS, MISSING, class_acc, class_iou, confusion_matrix, coverage, macc, miou, overall_acc,
                      summarize)
from .report import markdown_table, write_report
from .zeroshot import FeatureSet, as_feature_set, evaluate_features, predict_labels, text_embeddings

__all__ = ["confusion_matrix", "class_iou", "class_acc", "miou", "macc", "overall_acc", "coverage", "summarize",
           "CONVENTIONS", "MISSING", "FeatureSet", "as_feature_set", "predict_labels", "evaluate_features",
           "text_embeddings", "evaluate_sources", "store_source", "write_report", "markdown_table"]
