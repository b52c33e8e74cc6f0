#!/usr/bin/env bash
# Run here, once, before the GPU command: the wheels the GPU machine's image lacks, into .whl/ (git-ignored; carried
# to the GPU with the run's carry=[".whl"]). The image has Python 3.12 and its own CUDA torch, transformers, xarray,
# pandas, scipy and huggingface_hub (>= 1.32, as diffusers needs), but not diffusers, nor importlib_metadata and its
# lazy-importer, which diffusers imports. Versions: this project's constraints.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
NEEDED="diffusers importlib_metadata lazy-importer"
mkdir -p .whl
for name in $NEEDED; do
  pin=$(grep -i "^${name//-/[-_]}==" constraints.txt) || { echo "constraints.txt pins no $name" >&2; exit 1; }
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl "$pin"
done
ls -l .whl
