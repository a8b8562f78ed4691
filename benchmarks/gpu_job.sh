#!/usr/bin/env bash
# The GPU job: stage the wheels, run the GPU tests, the official baseline and our benchmarks on one machine, and
# write $OUT/<machine-kind>.json (benchmarks/results/ schema: common.py assemble). Phases run in the order given;
# a device call may run several, each within its limit (10 minutes a call), and the machine is kept only ~30 s
# between calls, so make them back to back (carry .device/a or .device/b, .device/stage.sh,
# .device/official_baseline.py; see shared/gpu/README.md):
#   bash benchmarks/gpu_job.sh stage-a                 # upload 1: the first half of the wheels
#   bash benchmarks/gpu_job.sh stage-b tests           # upload 2: the second half, then the GPU tests (TF32 off)
#   bash benchmarks/gpu_job.sh official kernel         # the official kernel and 7B model, then our kernels
#   bash benchmarks/gpu_job.sh model memory            # our 7B prefill / decode / 32k prefill, prefill memory
#   bash benchmarks/gpu_job.sh train-a                 # training, ours vs official: MAD and 162M shapes (~6 min)
#   bash benchmarks/gpu_job.sh train-b                 # 1.3B-class; 162M uncompiled / checkpointed (~7 min)
# Every phase ends by assembling what this machine has measured so far into $OUT/$MACHINE.json; copy the last
# one to benchmarks/results/ and run `python benchmarks/common.py tables benchmarks/results/<kind>.json --write`.
set -o pipefail
R=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/out}; JOB=/tmp/xlstm_job; mkdir -p "$OUT" "$JOB"
GPUS=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null)
N=$(printf '%s\n' "$GPUS" | grep -c .)
NAME=$(printf '%s\n' "$GPUS" | head -n 1 | tr 'A-Z ' 'a-z-')
MACHINE=${MACHINE:-$NAME$([ "$N" -gt 1 ] && echo "-x$N")}

# our package importable as xlstm_metal the way the wheel installs it (blocks/, kernels/, wiring_specs/ inside)
package() {
  rm -rf /tmp/xm && mkdir -p /tmp/xm && cp -r "$R/xlstm_metal" /tmp/xm/ \
    && cp -r "$R/blocks" "$R/kernels" "$R/wiring_specs" /tmp/xm/xlstm_metal/
  export PYTHONPATH=/root/site:/tmp/xm PYTHONUNBUFFERED=1
}

# bench SCRIPT LIMIT PART ARGS...: a benchmark script's JSON as $JOB/PART.json (and in $OUT)
bench() {
  local script=$1 limit=$2 part=$3; shift 3
  timeout "$limit" python3 "$R/benchmarks/$script" "$@" --out "$JOB/$part.json" > /dev/null 2> "$OUT/$part.err" \
    || { echo "$script: exit $? (tail of $OUT/$part.err:)"; tail -n 5 "$OUT/$part.err"; }
  [ -s "$JOB/$part.json" ] && cp "$JOB/$part.json" "$OUT/" && head -c 3000 "$JOB/$part.json" && echo
}

official() {
  [ -s "$JOB/official.json" ] && echo "--official $JOB/official.json"
}

for phase in "$@"; do
  echo "== $phase ($MACHINE)"
  case "$phase" in
  stage-a) bash "$R/.device/stage.sh" a ;;
  stage-b) bash "$R/.device/stage.sh" b || exit 3 ;;
  tests)  # every test that runs a GPU kernel: kernels, runner, the kernel-property suite (`gpu` hypothesis profile)
    package; rm -rf /tmp/xtests && cp -r "$R/tests" /tmp/xtests
    XLSTM_FAILURE_LOG=$OUT/test_failures.log XLSTM_HYPOTHESIS_PROFILE=${PROFILE:-gpu} MLX_ENABLE_TF32=0 \
      timeout -s INT "${TEST_TIMEOUT:-540}" env -C /tmp python3 -m pytest -q -p no:cacheprovider --durations=8 \
      ${TESTS:-/tmp/xtests/properties/test_kernel_properties.py /tmp/xtests/kernels /tmp/xtests/runner} \
      > "$JOB/tests.log" 2>&1
    cp "$JOB/tests.log" "$OUT/tests_gpu.log"; tail -n 25 "$JOB/tests.log" ;;
  official)  # the official xlstm (PyTorch + Triton): kernel at 1k / 4k / 16k, the 7B model's prefill and decode
    package
    timeout 240 python3 "$R/.device/official_baseline.py" --kernel-seqs 1024,4096,16384 --blocks 32 \
      --prefill 1024,4096 > "$JOB/official.json" 2> "$OUT/official.err" || tail -n 5 "$OUT/official.err"
    cp "$JOB/official.json" "$OUT/"; cat "$JOB/official.json" ;;
  kernel)  # (a fresh machine first compiles every kernel for each shape)
    package; bench bench_kernel.py 240 kernel --seqs 1024,4096,16384,65536 $(official) ;;
  model)
    package; bench bench_model.py 420 model --spec xlstm_7b --dtype bfloat16 --prefill 1024,4096,32768 \
      --decode-context 128,32768 --decode-steps 30 --decode-rounds 2 --iters 2 \
      --prefill-kernels compiled_chunkwise $(official) ;;
  memory)  # where a 32k-token prefill's peak goes: segment length x layers left in flight
    package; bench profile.py 300 prefill_memory prefill --spec xlstm_7b --seq-len 32768 --segments 2048,1024 \
      --eval-ahead 1,0 --warmup 1 ;;
  train-a)  # each side in a fresh process; a fresh machine first compiles our kernels (minutes at 162M)
    package; bench bench_train.py 540 train --shapes mad,162m --steps 10 --timeout 260 $TRAIN_ARGS ;;
  train-b)  # adds to train-a's train.json: the 1.3B-class shape (our kernels are train-a's: their names hold no
    # shapes), then 162M with our step not compiled and with every block checkpointed (new fusions: ~2 min)
    package; bench bench_train.py 300 train --shapes 1.3b --steps 10 --timeout 145 $TRAIN_ARGS
    bench bench_train.py 235 train --shapes 162m --sides ours_eager,ours_ckpt --steps 10 --timeout 160 $TRAIN_ARGS ;;
  *) echo "usage: gpu_job.sh stage-a|stage-b|tests|official|kernel|model|memory|train-a|train-b ..." >&2; exit 2 ;;
  esac
  case "$phase" in stage-*) continue ;; esac
  parts=(); for p in official kernel model prefill_memory train; do
    [ -s "$JOB/$p.json" ] && parts+=(--${p//_/-} "$JOB/$p.json"); done
  [ -s "$JOB/tests.log" ] && parts+=(--tests "$JOB/tests.log")
  PYTHONPATH= python3 "$R/benchmarks/common.py" assemble --machine "$MACHINE" "${parts[@]}" \
    --out "$OUT/$MACHINE.json" > /dev/null && echo "-> $OUT/$MACHINE.json"
done
