#!/usr/bin/env bash
# The prepared GPU command, run on a lent GPU machine in the repository's root (after benchmarks/gpu_wheels.sh here):
#
#   bash benchmarks/gpu_run.sh "$OUT"        # with the device tool: carry=[".whl"], timeout_s=540
#
# Stages, each under its own timeout (seconds), each with its log in OUT: install the carried wheels (60), the
# versions (30), the CUDA tests (tests/test_cuda.py and the kernel tests, 75), benchmarks/gpu.py --quick (90), then
# benchmarks/gpu.py at full size (240). gpu.py rewrites its CSV after every section, so a stage cut by its timeout
# keeps what it measured. At most 8 minutes in all; OUT/summary.txt says how each stage ended.
set -u
out=${1:?usage: bash benchmarks/gpu_run.sh OUT_FOLDER}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
: > "$out/summary.txt"

stage() {  # stage NAME SECONDS COMMAND...: run it under its timeout, log to OUT/NAME.log, one line in the summary
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  timeout "$limit" "$@" > "$out/$name.log" 2>&1
  rc=$?
  local how="ok"
  [ $rc -eq 124 ] && how="cut at its ${limit} s limit"
  [ $rc -ne 0 ] && [ $rc -ne 124 ] && how="failed (exit $rc)"
  echo "$name: $how, $(( $(date +%s) - start )) s" | tee -a "$out/summary.txt"
  return 0
}

stage install 60 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD"
stage versions 30 python3 -c "import torch, diffusers; print('torch', torch.__version__, 'CUDA', torch.version.cuda, \
'cuDNN', torch.backends.cudnn.version(), torch.cuda.get_device_name(), torch.cuda.get_device_capability(), \
'diffusers', diffusers.__version__)"
stage tests 75 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_kernel.py
stage quick 90 python3 benchmarks/gpu.py --quick --csv "$out/gpu_quick.csv"
stage full 240 python3 benchmarks/gpu.py --csv "$out/gpu.csv"
cat "$out/versions.log" >> "$out/summary.txt"
tail -n 3 "$out/tests.log" >> "$out/summary.txt"
cat "$out/summary.txt"
