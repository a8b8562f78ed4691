#!/usr/bin/env bash
# The GPU run, in consecutive calls on one machine (after stage.sh b):
#   bash benchmarks/gpu_tc_probe.sh check     # first-use check, its launches timed apart, the GPU tests (TF32 off)
#   bash benchmarks/gpu_tc_probe.sh tests     # the GPU tests alone (TESTS=..., TEST_TIMEOUT=...)
#   bash benchmarks/gpu_tc_probe.sh measure   # official kernel + 7B, then ours (kernel, 7B prefill/decode/32k), same call
#   bash benchmarks/gpu_tc_probe.sh decode    # 7B decode: step kernel shapes, GEMV floors, GEMV kernel vs MLX, nsys / ncu per token
#   bash benchmarks/gpu_tc_probe.sh prefill   # 7B prefill: layers in flight 0 / 1 / 2 (time, peak), ncu per kernel at 4k
# NCU=1 with check adds ncu's time per launch at 4k tokens. Results land in $OUT as JSON and logs.
. benchmarks/gpu_env.sh
set -o pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"; cd /tmp
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
NCU_BIN=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -n 1)
# ncu_profile NAME CALLS LIMIT SCRIPT ARGS...: GPU time per kernel of the script's --profile-range part (ncu replays
# each kernel alone: no launch gaps), divided by CALLS, as $OUT/NAME.json
ncu_profile() {
  local name=$1 calls=$2 limit=$3; shift 3
  if [ -z "$NCU_BIN" ]; then echo "no ncu on this machine"; return; fi
  timeout "$limit" "$NCU_BIN" --profile-from-start off --csv --metrics gpu__time_duration.sum python3 "$@" --profile-range \
      2>/dev/null > "/tmp/$name.csv"
  python3 "$R/benchmarks/ncu_summary.py" --calls "$calls" < "/tmp/$name.csv" > "$OUT/$name.json"; head -c 2500 "$OUT/$name.json"
}
# run_tests: the GPU tests, TESTS=... (pytest selection), TEST_TIMEOUT=... seconds
run_tests() {
  rm -rf /tmp/xtests && cp -r "$R/tests" /tmp/xtests
  # SIGINT at the limit: pytest still prints its summary and the failures
  # TESTS: pytest selection (default: everything that runs a GPU kernel); SIGINT at the limit keeps the summary
  # (properties first, under the `gpu` hypothesis profile: 6 examples each, every one compiles kernels for new shapes)
  XLSTM_FAILURE_LOG=$OUT/test_failures.log XLSTM_HYPOTHESIS_PROFILE=${PROFILE:-gpu} MLX_ENABLE_TF32=0 timeout -s INT ${TEST_TIMEOUT:-270} python3 -m pytest -q \
      -p no:cacheprovider --durations=8 \
      ${TESTS:-/tmp/xtests/properties/test_kernel_properties.py /tmp/xtests/kernels/test_mlstm_kernels.py /tmp/xtests/runner} \
      > "$OUT/tests_gpu.log" 2>&1; tail -n 40 "$OUT/tests_gpu.log"
  [ -s "$OUT/test_failures.log" ] && head -c 6000 "$OUT/test_failures.log"
}
case "$1" in
check)
  python3 -W always -c "
import time; from xlstm_metal.kernels.mlstm import tc_chunkwise as t
t0 = time.time(); ok = t.self_check('cuda'); print('tc self-check', ok, round(time.time() - t0, 1), 's')
print('tc error vs native (bf16 inputs):', t.check_errors(t._make_chunkwise(fallback=t.mlstm_chunkwise_native)))" 2>&1 | tee "$OUT/selfcheck.log"
  timeout 100 python3 "$R/benchmarks/profile_tc_chunkwise.py" --seqs ${SEQS:-1024,4096,16384} --out "$OUT/profile_tc.json" > /dev/null
  cat "$OUT/profile_tc.json"
  if [ -n "$NCU" ]; then
    "$NCU_BIN" --csv --metrics gpu__time_duration.sum python3 "$R/benchmarks/bench_kernel.py" --seqs 4096 --iters 2 \
        --only cuda_tc_chunkwise 2>/dev/null > "$OUT/ncu_tc_raw.csv"
    python3 "$R/benchmarks/ncu_summary.py" --calls 3 < "$OUT/ncu_tc_raw.csv" > "$OUT/ncu_tc.json"; head -c 1500 "$OUT/ncu_tc.json"
  fi
  run_tests ;;
tests)
  run_tests ;;
measure)
  timeout 200 python3 "$R/.device/official_baseline.py" --kernel-seqs 1024,4096,16384 --blocks 32 --prefill 1024,4096 \
      > /tmp/official.json 2> "$OUT/official.err"; tail -n 3 "$OUT/official.err"; cp /tmp/official.json "$OUT/official.json"; cat /tmp/official.json
  # (a fresh machine compiles every kernel for four shapes first: in run 10 the 80 s limit ended it without a result)
  timeout 200 python3 "$R/benchmarks/bench_kernel.py" --seqs 1024,4096,16384,65536 --official /tmp/official.json \
      --only cuda_tc_chunkwise,compiled_chunkwise --out "$OUT/kernel.json" > /dev/null || echo "bench_kernel: exit $?"
  cat "$OUT/kernel.json"
  timeout 280 python3 "$R/benchmarks/bench_model.py" --spec xlstm_7b --dtype bfloat16 --prefill 1024,4096,32768 \
      --decode-context 128,32768 --decode-steps 30 --decode-rounds 2 --iters 2 --prefill-kernels compiled_chunkwise --prefill-segments 2048 \
      --official /tmp/official.json --out "$OUT/7b.json" > /dev/null; cat "$OUT/7b.json"
;;
decode)
  # the step kernel alone: threadgroup shapes vs the native step and a bandwidth floor
  timeout 60 python3 "$R/benchmarks/bench_step.py" --out "$OUT/bench_step.json" > /dev/null; cat "$OUT/bench_step.json"
  timeout 90 python3 "$R/benchmarks/decode_floor.py" --spec xlstm_7b --dtype bfloat16 --out "$OUT/decode_floor.json" > /dev/null
  cat "$OUT/decode_floor.json"
  timeout 90 python3 "$R/benchmarks/bench_gemv.py" --out "$OUT/gemv.json" > /dev/null; cat "$OUT/gemv.json"
  # decode with the GEMV kernel (MLX's CUDA graph size, MLX_MAX_OPS_PER_BUFFER 20 / 100 / 400, made no difference in
  # run 7: h200_run7_decode_graph_sizes.json)
  timeout 60 python3 "$R/benchmarks/profile_decode.py" --spec xlstm_7b --tokens 40 --gemv --out "$OUT/decode_gemv.json" > /dev/null
  cat "$OUT/decode_gemv.json"
  NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -n 1)
  if [ -n "$NSYS" ]; then
    timeout 100 "$NSYS" profile -t cuda -o /tmp/decode -f true python3 "$R/benchmarks/profile_decode.py" \
        --spec xlstm_7b --tokens 40 --warmup 3 --out "$OUT/profile_decode_nsys.json" > /dev/null 2> "$OUT/nsys.err"
    "$NSYS" stats -r cuda_gpu_kern_sum -f csv /tmp/decode.nsys-rep 2>/dev/null \
        | python3 "$R/benchmarks/nsys_kernel_summary.py" --tokens 43 > "$OUT/nsys_decode.json"
    cat "$OUT/profile_decode_nsys.json"; head -c 3000 "$OUT/nsys_decode.json"
  else echo "no nsys on this machine"; fi
  # GPU time per kernel of three decoded tokens
  ncu_profile ncu_decode 3 120 "$R/benchmarks/profile_decode.py" --spec xlstm_7b --tokens 3 --warmup 3 ;;
prefill)
  for S in 1024 4096 32768; do
    timeout 120 python3 "$R/benchmarks/profile_prefill.py" --spec xlstm_7b --seq-len $S --eval-ahead 0,1,2 \
        --runs $([ $S -gt 4096 ] && echo 1 || echo 5) --warmup 2 --out "$OUT/prefill${S}_eval_ahead.json" > /dev/null
    cat "$OUT/prefill${S}_eval_ahead.json"
  done
  ncu_profile ncu_prefill4k 1 200 "$R/benchmarks/profile_prefill.py" --spec xlstm_7b --seq-len 4096 ;;
*) echo "usage: gpu_tc_probe.sh check|measure|decode|prefill" >&2; exit 2 ;;
esac
