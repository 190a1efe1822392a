#!/usr/bin/env bash
# Installs what building and testing momentd needs on a fresh Debian machine with a Rust
# toolchain. Idempotent: skips what is already there.
set -euo pipefail

need_pkgs=()
for p in pkg-config libssl-dev zlib1g-dev build-essential python3; do
  dpkg -s "$p" >/dev/null 2>&1 || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${need_pkgs[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_pkgs[@]}"
fi
command -v cargo >/dev/null || { echo "setup: cargo not found: install Rust (rustup) first" >&2; exit 1; }
echo "setup: ok"
