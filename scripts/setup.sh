#!/usr/bin/env bash
# Installs whatever is missing, and nothing that is already there (a re-run takes about a second).
#   bash scripts/setup.sh        runtime: system library for open3d, pinned Python packages, the `sas` command
#   bash scripts/setup.sh test   the same, plus headless Chromium + ChromeDriver for the browser tests
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PIP_DISABLE_PIP_VERSION_CHECK=1

apt_pkgs=()
ldconfig -p | grep -q 'libusb-1.0.so.0' || apt_pkgs+=(libusb-1.0-0)
if [ "${1:-}" = "test" ]; then
  command -v chromium >/dev/null || apt_pkgs+=(chromium)
  command -v chromedriver >/dev/null || apt_pkgs+=(chromium-driver)
fi
if [ ${#apt_pkgs[@]} -gt 0 ]; then
  echo "[setup] apt-get install ${apt_pkgs[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${apt_pkgs[@]}" >/dev/null
fi

if ! $PY scripts/check_requirements.py requirements.txt; then
  echo "[setup] pip install -r requirements.txt (torch comes from files on this disk)"
  $PY -m pip install -q -r requirements.txt
fi

# the package itself, editable, so that `sas` works from anywhere; reinstalled only when it points elsewhere
here=$(pwd -P)
there=$(cd / && $PY -c 'import pathlib, sas_engine; print(pathlib.Path(sas_engine.__file__).resolve().parents[1])' 2>/dev/null || true)
# ... or when the installed metadata declares other dependencies than requirements.txt (a pin was added or changed)
same_deps=$($PY -c 'import importlib.metadata as md, sys
want = sorted(l.split("#", 1)[0].strip() for l in open("requirements.txt") if l.split("#", 1)[0].strip())
try:
    have = sorted(r.strip() for r in (md.requires("sas-engine") or []))
except md.PackageNotFoundError:
    have = None
print("yes" if have == want else "no")' 2>/dev/null || echo no)
if [ "$there" != "$here" ] || [ "$same_deps" != "yes" ] || ! command -v sas >/dev/null || ! command -v sas-app >/dev/null; then
  echo "[setup] pip install -e . (the sas command)"
  $PY -m pip install -q --no-deps --no-build-isolation -e .
fi
echo "[setup] ready"
