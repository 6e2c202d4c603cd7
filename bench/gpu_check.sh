#!/usr/bin/env bash
# The checks that need a CUDA GPU, as one run on a lent machine:
#
#     bash bench/gpu_check.sh [STEPS]        # default 20 training steps
#
# 1. installs what is missing beyond torch/transformers/accelerate/peft from wheels/ (bench/fetch_gpu_wheels.sh),
#    offline; 2. runs the tests marked gpu; 3. trains the real-size SD 1.5 (random weights) at 512 px in bf16 and
#    prints s/step and it/s, peak VRAM (torch.cuda.max_memory_allocated) beside lorakit's meta-device estimate, and
#    MFU (FLOPs of one step counted by torch's FlopCounterMode, over step time and the GPU's dense bf16 peak);
# 4. prints the speed table (bench/gpu_speed.py): SD 1.5 at 512 (batch 1 and 4) and SDXL at 1024 (batch 1), each
#    speed setting against a bf16 baseline: it/s, peak VRAM, MFU, compile time. GPU_SPEED_ARGS replaces its
#    options (default "--skip sdxl:4"; GPU_SPEED_ARGS="" adds SDXL at batch 4, "--json FILE" keeps the rows).
# 5. prints the speed probe's steps/s per batch size beside the trainer's (bench/batch_speed.py: SD 1.5 at 512 in
#    bf16, batch 1, 2, 4 and 8) and the batch the suggestion picks from each.
# Without CUDA it says so, runs the CPU-safe part (1 step at 128 px, the speed table's dry run on tiny models)
# and exits 0.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
STEPS=${1:-20}
export HF_HUB_OFFLINE=1

missing=$("$PY" - <<'PYEOF'
import importlib.util

wanted = {"diffusers": "diffusers", "imagehash": "imagehash", "scipy": "scipy", "tomli_w": "tomli-w",
          "PIL": "pillow", "pytest": "pytest"}
print(" ".join(pkg for module, pkg in wanted.items() if importlib.util.find_spec(module) is None))
PYEOF
)
if [ -n "$missing" ]; then
    if [ ! -d wheels ]; then
        echo "missing: $missing; and there is no wheels/ folder (make it with bench/fetch_gpu_wheels.sh)" >&2
        exit 1
    fi
    echo "installing from wheels/: $missing"
    "$PY" -m pip install --quiet --no-index --find-links wheels/ $missing
fi

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "NO CUDA: torch sees no GPU here, so no GPU tests and no GPU figures."
    echo "CPU-safe part only: the real-size SD 1.5 bench, 1 step at 128 px."
    "$PY" bench/real_size.py --family sd15 --steps 1 --resolution 128
    echo "CPU dry run of the speed table (tiny models; no GPU figures)."
    "$PY" bench/gpu_speed.py --device cpu
    echo "CPU dry run of the speed probe beside the trainer (the demo's toy model, batch 1 and 2)."
    OMP_NUM_THREADS=1 "$PY" bench/batch_speed.py --batches 1,2 --steps 8
    exit 0
fi

"$PY" -c "import torch; print('device:', torch.cuda.get_device_name(), '| torch', torch.__version__, '| CUDA', torch.version.cuda)"
echo "== tests marked gpu"
set +e
"$PY" -m pytest -q -p no:cacheprovider -m gpu $(grep -l "mark.gpu" tests/test_*.py)
tests_rc=$?
set -e
echo "== real-size SD 1.5, 512 px, bf16, $STEPS steps"
"$PY" bench/real_size.py --family sd15 --device cuda --resolution 512 --precision bf16 --steps "$STEPS"
echo "== speed table: SD 1.5 at 512, SDXL at 1024, one setting changed per row"
set +e
# shellcheck disable=SC2086  # the options are words
"$PY" bench/gpu_speed.py --device cuda ${GPU_SPEED_ARGS---skip sdxl:4}
speed_rc=$?
echo "== the speed probe beside the trainer: SD 1.5 at 512, bf16, batch 1/2/4/8, and the batch each suggests"
"$PY" bench/batch_speed.py --real sd15 --device cuda --resolution 512 --precision bf16 --batches 1,2,4,8 --steps 20
set -e
[ "$tests_rc" -ne 0 ] && exit "$tests_rc"
exit $speed_rc
