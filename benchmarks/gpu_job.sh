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
#   bash benchmarks/gpu_job.sh serve                   # the HTTP server: first token per turn, tokens/s per client
#                                                      (SERVE_ARGS=... for other sizes)
#   bash benchmarks/gpu_job.sh mad-1                   # MAD, four specs, the recall tasks (~8.5 min; MAD_TIME=...)
#   bash benchmarks/gpu_job.sh mad-2                   # MAD, the copying, compression and memorization tasks
#   bash benchmarks/gpu_job.sh default-model           # retrain the shipped model into $OUT/default_model (~8.5 min)
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
  XM=/tmp/xm.$BASHPID  # one copy per phase process: phases may run side by side (`a & b & wait`)
  rm -rf "$XM" && mkdir -p "$XM" && cp -r "$R/xlstm_metal" "$XM/" \
    && cp -r "$R/blocks" "$R/kernels" "$R/wiring_specs" "$XM/xlstm_metal/"
  export PYTHONPATH=/root/site:$XM PYTHONUNBUFFERED=1
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

# default_model: xlstm_metal/default_model/TRAINING.md's recipe in one call. A 30-step run trains the tokenizer,
# compiles the kernels at the run's shapes and measures tokens/s; that sets --steps to fill what is left of a
# 9-minute call (DM_SECONDS overrides) after the run's start-up (as long as the 30-step run's, at most) and ~100 s
# for the rest: 6-bit conversion, held-out loss of the shipped model (before) and the new one (float, 6-bit), a sample.
default_model() {
  local x="python3 -m xlstm_metal.cli" d=$JOB/dm batch=${DM_BATCH:-32} seq=${DM_SEQ:-512} data tps steps secs
  local t0=$SECONDS t1
  local stdlib=${DM_STDLIB:-/usr/lib/python3.12}
  data=${DM_DATA:-$stdlib $(python3 -c "import importlib.util as u
for m in 'numpy networkx torch transformers'.split():
    s = u.find_spec(m)
    print(s.submodule_search_locations[0] if s else '')")}
  local args=(--data $data --max-bytes "${DM_MAX_BYTES:-40000000}" --batch-size "$batch" --seq-len "$seq")
  rm -rf "$d" "$OUT/default_model" && mkdir -p "$d"
  echo "data: $data"; python3 -m pip list 2>/dev/null | grep -iE "^(numpy|networkx|torch|transformers) " | tr -s ' '
  t1=$SECONDS
  $x train xlstm_small_code "${args[@]}" --out "$d/calib" --steps 30 --save-every 30 --eval-every 30 \
    > "$OUT/dm_calib.log" 2>&1 || { tail -n 5 "$OUT/dm_calib.log"; return 1; }
  head -n 3 "$OUT/dm_calib.log"
  tps=$(python3 -c "import json; print(int(json.load(open('$d/calib/trainer.json'))['log']['tokens_per_s']))")
  secs=${DM_SECONDS:-$(( 540 - 30 - (SECONDS - t0) - (SECONDS - t1) - 100 ))}
  secs=$(( secs > 420 ? 420 : secs < 20 ? 20 : secs ))
  steps=$(( tps * secs / (batch * seq) ))
  steps=$(( steps > ${DM_MAX_STEPS:-6000} ? ${DM_MAX_STEPS:-6000} : steps < 2 ? 2 : steps ))
  echo "calibration: $tps tokens/s after $(( SECONDS - t1 )) s -> --steps $steps (~$secs s of training)"
  t1=$SECONDS
  $x train xlstm_small_code "${args[@]}" --tokenizer "$d/calib/tokenizer.json" --out "$d/run" --steps "$steps" \
    --lr "${DM_LR:-2e-3}" --warmup $(( steps / 20 + 1 )) --eval-every $(( steps / 10 + 1 )) --save-every "$steps" \
    > "$OUT/dm_train.log" 2>&1 || { tail -n 5 "$OUT/dm_train.log"; return 1; }
  tail -n 2 "$OUT/dm_train.log"; echo "training run: $(( SECONDS - t1 )) s in all"
  $x convert "$d/run" "$OUT/default_model" --dtype bf16 -q --q-bits 6 --q-group-size 64 \
    && cp "$d/run/loss.svg" "$OUT/default_model/" && du -sh "$OUT/default_model"
  for set in "stdlib:$stdlib" "all:$data"; do  # before: the shipped model; after: float, then 6-bit
    $x evaluate --model "${DM_BEFORE:-$XM/xlstm_metal/default_model}" "$d/run" "$OUT/default_model" --data ${set#*:} \
      --max-bytes "${DM_MAX_BYTES:-40000000}" --held-out --json | sed "s/^/${set%%:*} /" | tee -a "$OUT/dm_eval.txt"
  done
  $x generate --model "$OUT/default_model" --prompt "def " --max-tokens 150 --quiet | tee "$OUT/dm_sample.txt"
  echo; echo "default-model phase: $(( SECONDS - t0 )) s"
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
  model)  # bf16, then the same after runner.quantize(4) (keys _q4): ~6-8 minutes
    package; bench bench_model.py 500 model --spec xlstm_7b --dtype bfloat16 --prefill 1024,4096,32768 \
      --decode-context 128,32768 --decode-steps 30 --decode-rounds 2 --iters 2 \
      --prefill-kernels compiled_chunkwise --quantize 4 $(official) ;;
  memory)  # where a 32k-token prefill's peak goes: segment length x layers left in flight
    package; bench profile.py 300 prefill_memory prefill --spec xlstm_7b --seq-len 32768 --segments 2048,1024 \
      --eval-ahead 1,0 --warmup 1 ;;
  train-a)  # each side in a fresh process; a fresh machine first compiles our kernels (minutes at 162M)
    package; bench bench_train.py 540 train --shapes mad,162m --steps 10 --timeout 260 $TRAIN_ARGS ;;
  train-b)  # adds to train-a's train.json: the 1.3B-class shape (our kernels are train-a's: their names hold no
    # shapes), then 162M with our step not compiled and with every block checkpointed (new fusions: ~2 min)
    package; bench bench_train.py 300 train --shapes 1.3b --steps 10 --timeout 145 $TRAIN_ARGS
    bench bench_train.py 235 train --shapes 162m --sides ours_eager,ours_ckpt --steps 10 --timeout 160 $TRAIN_ARGS ;;
  serve)  # the 7B behind `xlstm-metal serve` (needs the staged starlette + uvicorn; about 3 minutes): first token at
    # turns 1..10 of a conversation (1024 new tokens a turn), cache on and off; tokens/s with 1, 8, 32 clients
    package; bench bench_model.py 540 serve --serve ${SERVE_ARGS:---spec xlstm_7b --dtype bfloat16 --serve-turns 10 \
      --serve-turn-tokens 1024 --serve-clients 1,8,32 --serve-prompt 128 --serve-tokens 128} ;;
  mad-1|mad-2)  # MAD for the four specs, each call self-contained: $OUT/<phase>.runs.jsonl (all runs), .json, .txt;
    # workers side by side on the GPU, stopped after MAD_TIME s (default 450; the phase ~8.5 min). MAD_ARGS: 20 of
    # 200 epochs, 30% of each task's settings run baselines first (what the time leaves out is left out of the
    # table), lr {5e-4, 1e-3} x wd {0}; memorization (2 steps an epoch) keeps the protocol's 200 epochs.
    package; M=$JOB/$phase; T=${MAD_TIME:-450}; GRID="--budget 0.1 --settings 0.3 --lr 5e-4 1e-3 --wd 0"; rm -rf "$M"
    mad() {  # mad NAME ARGS...: one sweep into $M/NAME (the slowest spec first: its long runs start early)
      local name=$1; shift
      timeout $((T + 60)) python3 -m xlstm_metal mad hybrid_slstm xlstm_mad hybrid_mlstm_attention attention_baseline \
        --data "$JOB/mad_data" --time-limit "$T" --out "$M/$name" "$@" > "$OUT/$phase-$name.txt" 2> "$OUT/$phase-$name.err" \
        || { echo "mad $name: exit $?"; tail -n 5 "$OUT/$phase-$name.err"; }
    }
    if [ "$phase" = mad-1 ]; then
      mad recall --tasks in_context_recall,fuzzy_recall,noisy_recall --workers "${MAD_WORKERS:-8}" ${MAD_ARGS:-$GRID}
    else
      mad copy --tasks selective_copying,compression --workers "${MAD_WORKERS:-6}" ${MAD_ARGS:-$GRID} &
      mad memorization --tasks memorization --workers 2 ${MAD_MEM_ARGS:---settings 0.3 --lr 5e-4 1e-3 --wd 0} &
      wait
    fi
    cat "$M"/*/runs.jsonl > "$OUT/$phase.runs.jsonl" 2> /dev/null
    for f in "$M"/*/mad.json; do [ -s "$f" ] && cp "$f" "$OUT/$phase-$(basename "$(dirname "$f")").json"; done
    cat "$OUT/$phase"-*.txt; echo "$(grep -c . "$OUT/$phase.runs.jsonl") runs -> $OUT/$phase.runs.jsonl" ;;
  default-model)  # ~8.5 min; on CPU at tiny sizes: DM_SECONDS=1 DM_MAX_STEPS=4 DM_BATCH=2 DM_SEQ=64 DM_DATA=...
    package; default_model ;;
  *) echo "usage: gpu_job.sh stage-a|stage-b|tests|official|kernel|model|memory|train-a|train-b|serve|mad-1|mad-2|default-model" \
       "..." >&2; exit 2 ;;
  esac
  case "$phase" in stage-*|mad-*|default-model) continue ;; esac
  parts=(); for p in official kernel model prefill_memory train serve; do
    [ -s "$JOB/$p.json" ] && parts+=(--${p//_/-} "$JOB/$p.json"); done
  [ -s "$JOB/tests.log" ] && parts+=(--tests "$JOB/tests.log")
  PYTHONPATH= python3 "$R/benchmarks/common.py" assemble --machine "$MACHINE" "${parts[@]}" \
    --out "$OUT/$MACHINE.json" > /dev/null && echo "-> $OUT/$MACHINE.json"
done
