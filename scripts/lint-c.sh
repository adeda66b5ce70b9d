#!/usr/bin/env bash
# clang-tidy (Debian's, for the installed LLVM) on the addon's and the worker's C++ sources,
# with packages/xdp-native/.clang-tidy: a focused bug-finding set, every finding an error.
set -euo pipefail
cd "$(dirname "$0")/../packages/xdp-native"
napi=$(node -p "require('node-addon-api').include_dir")
export napi
git ls-files -z 'native/*.cc' |
  xargs -0 -n 2 -P "$(nproc)" sh -c 'clang-tidy-22 --quiet "$@" -- -std=c++17 -Iinclude \
    -isystem "$napi" -isystem /usr/include/node -DNAPI_VERSION=8 -DNAPI_CPP_EXCEPTIONS' clang-tidy
