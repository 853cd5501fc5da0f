#!/usr/bin/env bash
# Install everything napari-cryolearn needs to run and to be tested, into this checkout:
#   1. Debian packages for a headless napari (Xvfb, Mesa OpenGL, the xcb libraries Qt needs);
#   2. a virtual environment in .venv (made with python3, or $PYTHON);
#   3. CPU PyTorch (torch==2.13.0), installed BEFORE the project so that the project's bare
#      `torch` requirement is already met and pip does not pull a multi-GB CUDA build;
#   4. the project itself, editable, with its `testing` extra.
# Safe to re-run: each step is skipped or is a no-op when already done.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv"
TORCH_SPEC="torch==2.13.0"

APT_PACKAGES=(
  xvfb xauth
  libgl1 libegl1 libgl1-mesa-dri
  libxkbcommon-x11-0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0
  libxcb-render-util0 libxcb-xinerama0 libxcb-xfixes0 libxcb-shape0 libxcb-cursor0 libxcb-xkb1
  libdbus-1-3 libfontconfig1
)

say() { echo "install.sh: $*"; }

# --- 1. system packages ------------------------------------------------------------------------
if command -v dpkg >/dev/null 2>&1; then
  missing=()
  for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg -s "$pkg" 2>/dev/null | grep -q '^Status: install ok installed'; then
      missing+=("$pkg")
    fi
  done
  if ((${#missing[@]} == 0)); then
    say "system packages: all ${#APT_PACKAGES[@]} present, skipping apt-get"
  else
    SUDO=()
    if [[ "$(id -u)" -ne 0 ]]; then SUDO=(sudo); fi
    say "system packages: installing ${missing[*]}"
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  fi
else
  say "no dpkg here (not Debian?): install Xvfb, Mesa OpenGL and Qt's xcb libraries yourself"
fi

# --- 2. virtual environment --------------------------------------------------------------------
if [[ -x "$VENV/bin/python" ]]; then
  say "virtualenv: $VENV exists ($("$VENV/bin/python" --version 2>&1))"
else
  say "virtualenv: creating $VENV with $PYTHON ($("$PYTHON" --version 2>&1))"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)

say "upgrading pip"
"${PIP[@]}" install --upgrade pip

# --- 3. CPU torch first ------------------------------------------------------------------------
say "installing $TORCH_SPEC (before the project, so no CUDA build is pulled)"
"${PIP[@]}" install "$TORCH_SPEC"

# --- 4. the project ----------------------------------------------------------------------------
say "installing napari-cryolearn (editable) with the testing extra"
"${PIP[@]}" install -e ".[testing]"

say "done: $("$VENV/bin/python" -c 'import napari_cryolearn, torch; print("napari-cryolearn", napari_cryolearn.__version__, "| torch", torch.__version__)')"
say "try: .venv/bin/cryolearn --help   |   tests: xvfb-run -a .venv/bin/python -m pytest"
