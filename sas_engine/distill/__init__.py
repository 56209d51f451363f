"""Distillation of fused 2D features into the sparse 3D student (docs/method.md section 6), and student inference."""
