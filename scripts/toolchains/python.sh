#!/usr/bin/env bash
# The Python recipe's one tool: `componentize-py` (PyPI, prebuilt wheels), which
# bundles CPython compiled to WebAssembly and turns a Python module into a
# component for a WIT world. Installed into $WEIR_TOOLCHAINS/venv and linked
# into $WEIR_TOOLCHAINS/bin.
source "$(dirname "$0")/common.sh"
pip_tool componentize-py==0.25.1
ln -sf "$WEIR_TOOLCHAINS/venv/bin/componentize-py" "$WEIR_TOOLCHAINS/bin/componentize-py"
