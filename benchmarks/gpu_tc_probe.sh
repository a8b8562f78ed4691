#!/usr/bin/env bash
# One GPU call (after stage.sh b): the bf16 tensor-core chunkwise kernel's first-use check, its time next to the
# compiled kernel and the official kernel measured in the same call, its launches timed apart (profile_tc_chunkwise.py;
# NCU=1 adds ncu's time per launch at 4k tokens), then the kernel tests and the kernel-property suite (TF32 off).
. benchmarks/gpu_env.sh
set -o pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; cd /tmp
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -W always -c "
import time; from xlstm_metal.kernels.mlstm import tc_chunkwise as t
t0 = time.time(); ok = t.self_check('cuda'); print('tc self-check', ok, round(time.time() - t0, 1), 's')
print('tc error vs native (bf16 inputs):', t.check_errors(t._make_chunkwise(fallback=t.mlstm_chunkwise_native)))" 2>&1 | tee "$OUT/selfcheck.log"
timeout 200 python3 "$R/.device/official_baseline.py" --kernel-seqs ${SEQS:-1024,4096,16384} --blocks 1 --prefill 1024 \
    --decode-steps 5 > /tmp/official.json 2> "$OUT/official.err"; tail -n 3 "$OUT/official.err"; cp /tmp/official.json "$OUT/"
timeout 150 python3 "$R/benchmarks/bench_kernel.py" --seqs ${SEQS:-1024,4096,16384},65536 --official /tmp/official.json \
    --only ${KERNELS:-cuda_tc_chunkwise,compiled_chunkwise} --out "$OUT/kernel.json" > /dev/null; cat "$OUT/kernel.json"
timeout 120 python3 "$R/benchmarks/profile_tc_chunkwise.py" --seqs ${SEQS:-1024,4096,16384} --out "$OUT/profile_tc.json" > /dev/null
cat "$OUT/profile_tc.json"
if [ -n "$NCU" ]; then
  /usr/local/cuda/bin/ncu --csv --metrics gpu__time_duration.sum python3 "$R/benchmarks/bench_kernel.py" --seqs 4096 --iters 2 \
      --only cuda_tc_chunkwise 2>/dev/null > "$OUT/ncu_tc_raw.csv"
  python3 "$R/benchmarks/ncu_summary.py" --calls 3 < "$OUT/ncu_tc_raw.csv" > "$OUT/ncu_tc.json"; head -c 1500 "$OUT/ncu_tc.json"
fi
rm -rf /tmp/xtests && cp -r "$R/tests" /tmp/xtests
MLX_ENABLE_TF32=0 timeout ${TEST_TIMEOUT:-240} python3 -m pytest -q -p no:cacheprovider --durations=8 /tmp/xtests/kernels/test_mlstm_kernels.py \
    /tmp/xtests/properties/test_kernel_properties.py > "$OUT/tests_gpu.log" 2>&1; tail -n 25 "$OUT/tests_gpu.log"
