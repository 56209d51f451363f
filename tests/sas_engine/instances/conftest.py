"""Shared fixtures: the tiny synthetic rooms with superpoints and the shipped student's features in a temp store."""
import numpy as np
import pytest


@pytest.fixture(scope="package")
def tiny_store(tmp_path_factory):
    """(store, [scene, scene]) for the two tiny rooms, with ``superpoints`` and ``pred3d.student`` stored."""
    import torch

    from sas_engine.io import load_scene
    from sas_engine.pipeline import PipelineConfig, ensure_student, ensure_superpoints
    from sas_engine.store import ArtefactStore
    from sas_engine.synth import ensure_split

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    store = ArtefactStore(tmp_path_factory.mktemp("inst_store"))
    scenes = [load_scene(p) for p in ensure_split("tiny")]
    for s in scenes:
        ensure_superpoints(store, s)
        ensure_student(store, s, PipelineConfig())
    torch.set_num_threads(n)
    return store, scenes


@pytest.fixture
def class_feature_artefact():
    """The helper :func:`_class_feature_artefact` (test modules cannot import conftest under importlib mode)."""
    return _class_feature_artefact


def _class_feature_artefact(store, scene, name: str, noise: float = 0.0, seed: int = 0, confuse=None):
    """Store ``name`` (a pred3d-style artefact) whose point features are the text embeddings of each point's true
    class prompt ("a chair in a scene"), plus optional Gaussian noise: labelling must then find the true classes.
    ``confuse`` ({class index: class index}) gives every point of a class another class's embedding."""
    import torch

    from sas_engine.instances.labelling import text_embeddings
    from sas_engine.labels import get_label_set

    ls = get_label_set(scene.label_set)
    text = text_embeddings(ls.prompt_names)
    lab = np.where(scene.labels == 255, len(ls) - 1, scene.labels).astype(np.int64)
    for a, b in (confuse or {}).items():
        lab[scene.labels == a] = b
    f = text[torch.from_numpy(lab)]
    if noise:
        g = torch.Generator().manual_seed(seed)
        f = f + noise * torch.randn(f.shape, generator=g)
    kind = "fused" if name.startswith("fused.") else "pred3d"  # the kind its name implies (sas_engine.artefacts)
    store.save(scene.scene_id, name, {"features": f.half()}, kind=kind, config={"test": name},
               inputs={"scene": scene.scene_id}, geometry=scene.geometry_digest)
    return f
