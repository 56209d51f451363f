"""Exit 0 when every pinned requirement in the given file is installed at its pinned version, else 1 (and say which).

Used by scripts/setup.sh so that re-running the set-up is instant when nothing is missing.
"""
import importlib.metadata as md
import re
import sys


def main(path: str) -> int:
    missing = []
    for line in open(path):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)", line)
        if not m:
            continue
        name, ver = m.groups()
        try:
            have = md.version(name)
        except md.PackageNotFoundError:
            missing.append(f"{name} (not installed)")
            continue
        if have != ver:
            missing.append(f"{name} ({have} installed, {ver} pinned)")
    if missing:
        print("missing or wrong version: " + ", ".join(missing))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "requirements.txt"))
