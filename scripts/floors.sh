#!/usr/bin/env bash
# The oldest versions lorakit is tested with: a venv where constraints/floors.txt pins torch, diffusers,
# transformers, peft and accelerate at pyproject.toml's floors, then the tests that touch them (~3 min, 2 cores).
#   bash scripts/floors.sh [VENV]          (default /tmp/lorakit-floors; CI does not run it)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-/tmp/lorakit-floors}"
python3 -m venv "$venv"
# pip fails here if pyproject.toml's floors do not admit the pinned versions
"$venv/bin/pip" install -c constraints/floors.txt -e ".[test]"
"$venv/bin/pip" list 2>/dev/null | grep -iE '^(torch|diffusers|transformers|peft|accelerate) '
OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 "$venv/bin/python" -m pytest -q -o addopts="-p no:cacheprovider" \
    tests/test_tiny.py tests/test_families.py tests/test_networks.py tests/test_lora_file.py tests/test_patching.py \
    tests/test_tokenizers.py tests/test_single_file.py tests/test_train.py tests/test_generate.py tests/test_grid.py \
    tests/test_optim.py tests/test_state.py tests/test_captioners.py tests/test_demo.py
