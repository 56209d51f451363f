"""build_demo's order and progress (the pipeline stages stubbed): rooms openable one by one before the long steps,
a progress bar that moves with the work (image by image through the capability table) and never goes back."""
from __future__ import annotations

import types
from pathlib import Path

import sas_engine.demo as demo


def test_rooms_first_then_capability_per_image_then_scenes(tmp_path, monkeypatch):
    log: list = []
    rooms = [tmp_path / f"synth100{i}_0{i - 1}" for i in range(1, 4)]

    def ensure_split(split, root=None, first=None, progress=True):
        assert split == demo.DEMO_SPLIT and not progress
        log.append(("generate", first))
        return rooms[:first]

    monkeypatch.setattr("sas_engine.synth.ensure_split", ensure_split)
    monkeypatch.setattr("sas_engine.io.load_scene", lambda p: types.SimpleNamespace(scene_id=Path(p).name))
    monkeypatch.setattr("sas_engine.pipeline.ensure_superpoints", lambda store, s: log.append(("sp", s.scene_id)))
    monkeypatch.setattr("sas_engine.pipeline.ensure_student", lambda store, s, cfg: log.append(("student", s.scene_id)))
    monkeypatch.setattr("sas_engine.pipeline.build_teachers", lambda cfg: ["t1", "t2"])

    def ensure_capability(store, teachers, cfg, progress=None):
        log.append(("capability",))
        for i in range(1, 41):
            progress(i, 40)

    def run_split(store, paths, cfg, progress=None, workers=1, on_scene=None):
        log.append(("run_split", len(paths)))
        for i, p in enumerate(paths):
            on_scene(p.name)
            progress(0.1 + 0.9 * (i + 1) / len(paths), f"scene {p.name} done")
        return [p.name for p in paths]

    monkeypatch.setattr("sas_engine.pipeline.ensure_capability", ensure_capability)
    monkeypatch.setattr(demo, "run_split", run_split)
    monkeypatch.setattr("sas_engine.synth.SPLITS", {demo.DEMO_SPLIT: types.SimpleNamespace(scenes=[0, 1, 2])})
    fracs, ready = [], []
    ids = demo.build_demo(tmp_path / "store", max_scenes=3, progress=lambda f, m: fracs.append(f), workers=1,
                          on_scene=lambda sid, folder: (ready.append((sid, len(log))), log.append(("ready", sid))))
    assert ids == [r.name for r in rooms]
    # every room is announced right after its student layer, before the capability table starts
    cap_at = log.index(("capability",))
    firsts = [k for k, e in enumerate(log) if e[0] == "ready"][:3]
    assert all(k < cap_at for k in firsts)
    assert [log[k - 1] for k in firsts] == [("student", r.name) for r in rooms]
    assert [sid for sid, _ in ready] == [r.name for r in rooms] * 2  # and again when its last layers land
    # the bar never goes back, ends at 1, and moves through the capability table image by image
    assert fracs == sorted(fracs) and fracs[-1] == 1.0
    r_end = demo.PHASE_SHARES["rooms"]
    c_end = r_end + demo.PHASE_SHARES["capability"]
    inside = [f for f in fracs if r_end < f < c_end]
    assert len(inside) >= 39 and max(b - a for a, b in zip(fracs, fracs[1:])) <= 0.1


def test_cold_build_with_workers_opens_rooms_one_by_one(tmp_path):
    """The real cold build of two demo rooms with two workers: each room is announced when it can be opened and again
    with every layer, never the second time first; both open before either has its teachers; the bar never goes
    back; the layers are all there."""
    from sas_engine.store import ArtefactStore

    events, fracs = [], []
    store = ArtefactStore(tmp_path / "store")
    ids = demo.build_demo(store, data_root=tmp_path / "data", max_scenes=2, workers=2,
                          progress=lambda f, m: fracs.append(f), on_scene=lambda sid, folder: events.append(sid))
    assert ids == ["synth1001_00", "synth1002_01"]
    assert sorted(events) == sorted(ids * 2)
    assert all(events.index(i) < len(events) - 1 - events[::-1].index(i) for i in ids)
    assert events[:2] == ids
    assert fracs == sorted(fracs) and fracs[-1] == 1.0
    for sid in ids:
        have = {p.name.split(".pt")[0] for p in store.scene_dir(sid).iterdir()}
        assert {"superpoints", "pred3d.student", "fused.sas", "fused.add", "fused.linear"} <= have, have
    # a second build reads the caches (no process pool: every room is generated)
    again = []
    assert demo.build_demo(store, data_root=tmp_path / "data", max_scenes=2, workers=2,
                           on_scene=lambda sid, folder: again.append(sid)) == ids


def test_run_split_sends_cold_rooms_to_the_workers_even_when_the_table_is_shipped(tmp_path, monkeypatch):
    """With the capability table already on disk (shipped), a room whose fusions were never stored still goes to
    the worker pool at once, all remaining rooms with it; a room with every fusion stored runs in-process."""
    from types import SimpleNamespace

    import sas_engine.pipeline as pl
    from sas_engine.store import ArtefactStore

    pooled, in_process = [], []
    monkeypatch.setattr(pl, "build_teachers", lambda cfg: [SimpleNamespace(name="t1"), SimpleNamespace(name="t2")])
    monkeypatch.setattr(pl, "ensure_capability", lambda *a, **k: None)
    monkeypatch.setattr(pl, "run_scene", lambda store, scene, *a, **k: in_process.append(scene.scene_id))
    monkeypatch.setattr(pl, "_run_split_parallel",
                        lambda store, paths, *a, **k: pooled.append([str(p) for p in paths]) or list(paths))
    monkeypatch.setattr("sas_engine.io.load_scene",
                        lambda p, dataset=None: SimpleNamespace(scene_id=str(p), frames=[0]))
    store = ArtefactStore(tmp_path)
    assert pl.run_split(store, ["r1", "r2", "r3"], pl.PipelineConfig(), workers=2) == ["r1", "r2", "r3"]
    assert pooled == [["r1", "r2", "r3"]] and in_process == []
    for name in ("t1", "t2", "sas", "add", "linear"):
        store.scene_dir("r1").mkdir(parents=True, exist_ok=True)
        store.path("r1", f"fused.{name}").write_bytes(b"")
    pooled.clear()
    assert pl.run_split(store, ["r1", "r2", "r3"], pl.PipelineConfig(), workers=2) == ["r1", "r2", "r3"]
    assert in_process == ["r1"] and pooled == [["r2", "r3"]]
    pooled.clear()
    in_process.clear()
    pl.run_split(store, ["r2", "r3"], pl.PipelineConfig(), workers=1)  # one worker: never a pool
    assert pooled == [] and in_process == ["r2", "r3"]
