#!/usr/bin/env bash
# Installs the system libraries the package links (OpenBLAS, libpng, libjpeg-turbo, zlib) when they are
# missing: through apt when run as root, otherwise it stops with the exact command to run.
set -euo pipefail

packages=(libopenblas-dev libpng-dev libjpeg62-turbo-dev zlib1g-dev pkg-config)
missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: missing system libraries (${missing[*]}) and no apt-get here: install OpenBLAS, libpng and libjpeg-turbo development packages." >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "error: missing system libraries: ${missing[*]}" >&2
  echo "run:   sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing ${missing[*]} ..."
export DEBIAN_FRONTEND=noninteractive
# A fresh machine's package lists can be empty or stale: update first, quietly.
apt-get update -qq >/dev/null
apt-get install -y -qq "${missing[@]}" >/dev/null
