#!/usr/bin/env bash
# Wheels of what lorakit needs beyond torch, transformers, accelerate and peft, for a CUDA machine without network
# (bench/gpu_check.sh installs from them). Run where pip can reach PyPI:
#
#     bash bench/fetch_gpu_wheels.sh                         # for this Python's version, Linux x86_64
#     PYTHON_VERSION=3.12 bash bench/fetch_gpu_wheels.sh     # for the GPU machine's Python
#
# Only the packages the training path imports (diffusers; imagehash and scipy for the dataset checks; tomli-w;
# pytest for the GPU tests) and their dependencies that transformers does not already bring (numpy, pyyaml,
# safetensors, huggingface-hub, regex, tqdm, filelock, packaging come with it). The notebook-only dependencies
# (jupyterlab, ipywidgets, matplotlib) are left out. About 55 MB, into wheels/ (ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
VERSION=${PYTHON_VERSION:-$("$PY" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')}
"$PY" -m pip download --dest wheels --no-deps --only-binary=:all: --python-version "$VERSION" \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    "diffusers>=0.35.2" importlib_metadata zipp "pillow>=10" requests urllib3 idna charset-normalizer certifi \
    "imagehash>=4.3" PyWavelets "scipy>=1.10" "tomli-w>=1.0" "pytest>=8" iniconfig pluggy pygments
ls -l wheels
