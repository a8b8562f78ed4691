#!/usr/bin/env bash
# One whole measurement on the GPU machine (after stage.sh a/b): tests on the GPU, then ours vs the
# official implementation in the same job. Results land in $OUT as JSON.
set -o pipefail
export PYTHONPATH=/root/site:$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import mlx.core as mx; print('mlx', mx.__version__, mx.default_device())"
timeout 240 python3 -m pytest -q -p no:cacheprovider tests/kernels tests/runner ${TESTS_EXTRA:-} 2>&1 | tail -n 15 | tee "$OUT/tests_gpu.log"
timeout 200 python3 .device/official_baseline.py --kernel-seqs ${SEQS:-1024,4096,16384} --blocks 32 --prefill 1024,4096 > "$OUT/official.json" 2> "$OUT/official.err"; tail -n 3 "$OUT/official.err"
cat "$OUT/official.json"
timeout 120 python3 benchmarks/bench_kernel.py --seqs ${SEQS:-1024,4096,16384},65536 --official "$OUT/official.json" --out "$OUT/kernel.json"
timeout 60 python3 benchmarks/bench_model.py --spec xlstm_tiny --prefill 128,1024 --out "$OUT/tiny.json" > /dev/null
timeout 240 python3 benchmarks/bench_model.py --spec xlstm_7b --dtype bfloat16 --prefill 1024,4096 --decode-context 128 \
    --decode-steps 30 --iters 2 --official "$OUT/official.json" --out "$OUT/7b.json"
