"""Split caching (ensure_split), the ``sas synth`` command and single-object views."""
import json

import numpy as np
import pytest

from sas_engine.cli import main
from sas_engine.errors import SASInputError
from sas_engine.io import load_scene
from sas_engine.synth import SynthConfig, render_object_views, splits
from sas_engine.synth.splits import SplitSpec, ensure_split


@pytest.fixture
def micro_split(monkeypatch):
    spec = SplitSpec("micro", ((5, "bathroom"),), SynthConfig(target_vertices=5000, num_frames=3,
                                                                image_size=(160, 120)))
    monkeypatch.setitem(splits.SPLITS, "micro", spec)
    return spec


def test_ensure_split_generates_once_and_caches(tmp_path, micro_split):
    paths = ensure_split("micro", tmp_path, progress=False)
    assert paths == [tmp_path / "micro" / "scans" / "synth0005_04"]
    marker = paths[0] / "sas_synthetic.json"
    info = json.loads(marker.read_text())
    assert info["seed"] == 5 and info["room_type"] == "bathroom" and info["num_frames"] == 3
    assert {"bathtub", "toilet", "sink", "shower curtain"} <= set(info["classes"])
    stamp = marker.stat().st_mtime_ns
    assert ensure_split("micro", tmp_path, progress=False) == paths
    assert marker.stat().st_mtime_ns == stamp  # cached, not regenerated
    # an outdated marker makes it regenerate; no temp folders are left behind
    info["version"] = -1
    marker.write_text(json.dumps(info))
    ensure_split("micro", tmp_path, progress=False)
    assert json.loads(marker.read_text())["version"] != -1
    assert sorted(p.name for p in (tmp_path / "micro" / "scans").iterdir()) == ["synth0005_04"]
    scene = load_scene(paths[0])
    assert len(scene.frames) == 3 and scene.frames[0].color.shape == (240, 320, 3)


def test_ensure_split_first_generates_only_the_leading_rooms(tmp_path, monkeypatch):
    cfg = SynthConfig(target_vertices=3000, num_frames=2, image_size=(80, 60))
    monkeypatch.setitem(splits.SPLITS, "duo", SplitSpec("duo", ((5, "bathroom"), (6, "office")), cfg))
    first = ensure_split("duo", tmp_path, progress=False, first=1)
    assert first == [tmp_path / "duo" / "scans" / "synth0005_04"]
    assert sorted(p.name for p in (tmp_path / "duo" / "scans").iterdir()) == ["synth0005_04"]
    both = ensure_split("duo", tmp_path, progress=False)
    assert both[0] == first[0] and both[1].name == "synth0006_02" and both[1].is_dir()


def test_ensure_split_refuses_foreign_folder(tmp_path, micro_split):
    (tmp_path / "micro" / "scans" / "synth0005_04").mkdir(parents=True)
    with pytest.raises(SASInputError, match="not a synthetic scene folder"):
        ensure_split("micro", tmp_path, progress=False)
    with pytest.raises(SASInputError, match="unknown synthetic split"):
        ensure_split("nope", tmp_path)


def test_cli_synth_one_room(tmp_path, capsys):
    rc = main(["synth", "--seed", "2", "--room", "kitchen", "--out", str(tmp_path), "--frames", "2",
               "--vertices", "4000"])
    assert rc == 0
    folder = tmp_path / "scans" / "synth0002_03"
    assert str(folder) in capsys.readouterr().out
    scene = load_scene(folder)
    assert {"counter", "refrigerator", "sink"} <= {__import__("sas_engine.labels").labels.SCANNET20[c]
                                                   for c in scene.classes_present()}
    assert main(["synth", "--seed", "2", "--room", "garage", "--out", str(tmp_path)]) == 2
    assert main(["synth", "--split", "tiny", "--seed", "1"]) == 2


def test_object_views_have_exact_masks():
    views = render_object_views("chair", 2, seed=3, size=(160, 120), context="plain")
    assert len(views) == 2
    for img, mask in views:
        assert img.shape == (120, 160, 3) and img.dtype == np.uint8 and mask.shape == (120, 160)
        assert 0.02 <= mask.mean() < 0.9
        bg = img[~mask].astype(float)
        assert bg.std(0).max() < 12  # plain background: one colour + vignetting and noise
        assert np.abs(img[mask].astype(float).mean(0) - bg.mean(0)).max() > 5 or img[mask].std() > 10
    again = render_object_views("chair", 2, seed=3, size=(160, 120), context="plain")
    assert all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(views, again))
    (img, mask), = render_object_views("shower curtain", 1, seed=1, size=(160, 120), context="cluttered")
    assert mask.mean() >= 0.02 and img[~mask].std() > 12  # other things around it
    (img, mask), = render_object_views("other furniture", 1, seed=0, size=(160, 120))
    assert mask.any()
    with pytest.raises(SASInputError, match="no objects of class"):
        render_object_views("spaceship", 1)
