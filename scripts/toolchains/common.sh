# Shared by the per-language toolchain installers in this folder (sourced, not run).
#
# Everything is installed under one prefix, $WEIR_TOOLCHAINS (default
# ~/.weir/toolchains), from package registries only (crates.io, PyPI, npm,
# Debian), never into the system's own Python or Node:
#   $WEIR_TOOLCHAINS/bin    cargo-installed tools and links to the others
#   $WEIR_TOOLCHAINS/venv   a Python virtual environment for PyPI tools
#   $WEIR_TOOLCHAINS/npm    an npm prefix for npm tools
# `weir build` looks for tools in these folders first, then on PATH, so
# nothing needs adding to PATH and a machine's own older tools (a
# preinstalled Go 1.26) do not shadow the pinned ones.
set -euo pipefail
WEIR_TOOLCHAINS="${WEIR_TOOLCHAINS:-$HOME/.weir/toolchains}"
mkdir -p "$WEIR_TOOLCHAINS/bin"

say() { echo "install: $*" >&2; }

# The Python virtual environment, created on first use.
venv() {
  if [ ! -x "$WEIR_TOOLCHAINS/venv/bin/python" ]; then
    say "creating a Python environment in $WEIR_TOOLCHAINS/venv"
    python3 -m venv "$WEIR_TOOLCHAINS/venv"
  fi
}

# pip_tool PACKAGE==VERSION: installs a PyPI package into the venv unless that
# exact version is already there.
pip_tool() {
  venv
  local spec="$1" name="${1%%==*}" version="${1#*==}"
  local shown
  shown=$("$WEIR_TOOLCHAINS/venv/bin/python" -m pip show "$name" 2>/dev/null || true)
  if grep -qx "Version: $version" <<<"$shown"; then
    return
  fi
  say "pip install $spec"
  "$WEIR_TOOLCHAINS/venv/bin/python" -m pip install --quiet --disable-pip-version-check "$spec"
}

# npm_tool PACKAGE@VERSION: installs an npm package under the npm prefix.
npm_tool() {
  local spec="$1" name="${1%@*}" version="${1##*@}"
  local have
  have=$(node -e "try{console.log(require('$WEIR_TOOLCHAINS/npm/node_modules/$name/package.json').version)}catch(e){}" 2>/dev/null || true)
  if [ "$have" = "$version" ]; then
    return
  fi
  say "npm install $spec"
  mkdir -p "$WEIR_TOOLCHAINS/npm"
  npm install --prefix "$WEIR_TOOLCHAINS/npm" --no-audit --no-fund --loglevel=error "$spec"
}

# apt_pkgs PACKAGE...: installs Debian packages that are missing.
apt_pkgs() {
  local missing=()
  for p in "$@"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return
  say "apt-get install ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get install -y -qq "${missing[@]}" >/dev/null || {
    $sudo apt-get update -qq >/dev/null
    $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  }
}
