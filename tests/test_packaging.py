"""The installed package declares what it needs and the two commands (`sas`, `sas-app`) resolve to the code here."""
import importlib.metadata as md
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_entry_points_and_declared_dependencies():
    eps = {e.name: e for e in md.entry_points(group="console_scripts")}
    assert eps["sas"].value == "sas_engine.cli:main" and eps["sas-app"].value == "app.cli:main"
    from app.cli import main

    assert eps["sas-app"].load() is main
    pins = {}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.\-]+)==(\S+)", line.split("#", 1)[0].strip())
        if m:
            pins[m.group(1).lower().replace("_", "-")] = m.group(2)
    declared = {re.split(r"[=<>!~ ;\[]", r, 1)[0].lower().replace("_", "-"): r for r in md.requires("sas-engine")}
    assert pins and set(pins) <= set(declared)
    assert all(f"=={v}" in declared[k] for k, v in pins.items())
