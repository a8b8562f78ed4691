#!/usr/bin/env bash
# The GPU measurement, in two consecutive calls on one machine (after `stage.sh b` and `. benchmarks/gpu_env.sh`):
#   bash benchmarks/gpu_job.sh tests-official    # the GPU test run (TF32 off), then the official baseline
#   bash benchmarks/gpu_job.sh ours              # our kernel and 7B benchmarks (= kernel, then model), ratios to that baseline
#   bash benchmarks/gpu_job.sh official|kernel|model|memory|tests|selfcheck   # the parts one by one
# Results land in $OUT as JSON; the official JSON is kept in /tmp for the second call.
set -o pipefail
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
cd /tmp
case "$1" in
tests-official)
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
  rm -rf /tmp/xtests && cp -r "$R/tests" /tmp/xtests
  MLX_ENABLE_TF32=0 timeout 420 python3 -m pytest -q -p no:cacheprovider /tmp/xtests/kernels /tmp/xtests/runner \
      /tmp/xtests/properties/test_kernel_properties.py 2>&1 > "$OUT/tests_gpu.log" 2>&1; tail -n 15 "$OUT/tests_gpu.log"
  timeout 220 python3 "$R/.device/official_baseline.py" --kernel-seqs ${SEQS:-1024,4096,16384} --blocks 32 \
      --prefill 1024,4096 > /tmp/official.json 2> "$OUT/official.err"; tail -n 3 "$OUT/official.err"
  cp /tmp/official.json "$OUT/official.json"; cat /tmp/official.json ;;
official)
  timeout 220 python3 "$R/.device/official_baseline.py" --kernel-seqs ${SEQS:-1024,4096,16384} --blocks 32 \
      --prefill 1024,4096 > /tmp/official.json 2> "$OUT/official.err"; tail -n 3 "$OUT/official.err"
  cp /tmp/official.json "$OUT/official.json"; cat /tmp/official.json ;;
ours) bash "$0" kernel && bash "$0" model ;;
kernel)
  timeout 150 python3 "$R/benchmarks/bench_kernel.py" --seqs ${SEQS:-1024,4096,16384},65536 --official /tmp/official.json \
      --out "$OUT/kernel.json" > /dev/null; cat "$OUT/kernel.json" ;;
model)
  timeout 300 python3 "$R/benchmarks/bench_model.py" --spec xlstm_7b --dtype bfloat16 --prefill 1024,4096 \
      --decode-context 128 --decode-steps 30 --iters 2 --prefill-kernels ${PREFILL_KERNELS:-cuda_mma_chunkwise} \
      --official /tmp/official.json --out "$OUT/7b.json" > /dev/null
  cat "$OUT/7b.json" ;;
selfcheck)
  python3 -W always -c "from xlstm_metal.kernels.mlstm import fused_chunkwise as c, fused_step as s, mma_chunkwise as t
print('fused chunkwise agrees with native:', c.self_check('cuda')); print('fused step agrees with native:', s.self_check('cuda'))
print('tensor-core chunkwise agrees with native (3xTF32, then TF32):', t.self_check('cuda', precise=False))" ;;
tests)  # what runs on the GPU: kernels, runner, the kernel-property suite (the CPU emulations of the fused kernels run in CI)
  rm -rf /tmp/xtests && cp -r "$R/tests" /tmp/xtests
  MLX_ENABLE_TF32=0 timeout ${TEST_TIMEOUT:-540} python3 -m pytest -q -p no:cacheprovider --durations=12 /tmp/xtests/kernels/test_mlstm_kernels.py \
      /tmp/xtests/runner /tmp/xtests/properties/test_kernel_properties.py > "$OUT/tests_gpu.log" 2>&1; tail -n 30 "$OUT/tests_gpu.log" ;;
memory)
  timeout ${MEM_TIMEOUT:-400} python3 "$R/benchmarks/bench_model.py" --spec xlstm_7b --dtype bfloat16 --prefill 4096,32768 \
      --decode-context 128,32768 --decode-steps 20 --iters 1 --prefill-kernels ${PREFILL_KERNELS:-cuda_mma_chunkwise} \
      --prefill-segments ${MMA_SEGMENTS:-32768} --out "$OUT/7b_memory.json" > /dev/null; cat "$OUT/7b_memory.json" ;;
ncu)  # GPU time per launch of the chunkwise kernel at $SEQS: ours (profile_chunkwise variants, 3 calls) and the official one (3 calls)
  NCU="/usr/local/cuda/bin/ncu --csv --metrics gpu__time_duration.sum"
  for v in ${VARIANTS:-compiled_L64 compiled_L128}; do
    $NCU python3 "$R/benchmarks/profile_chunkwise.py" --seqs ${SEQS:-4096} --only $v --iters 1 2>/dev/null | tee "$OUT/ncu_raw_$v.csv" \
      | python3 "$R/benchmarks/ncu_summary.py" --calls 3 > "$OUT/ncu_$v.json"; echo "== $v"; head -c 2500 "$OUT/ncu_$v.json"
  done
  $NCU python3 -c "
import torch; from mlstm_kernels.torch import get_mlstm_kernel
kern = get_mlstm_kernel('chunkwise--triton_limit_chunk'); S = ${SEQS:-4096}; bf = torch.bfloat16
q = torch.randn(1, 8, S, 256, device='cuda', dtype=bf); k = torch.randn_like(q); v = torch.randn(1, 8, S, 512, device='cuda', dtype=bf)
i = torch.randn(1, 8, S, device='cuda', dtype=bf); f = torch.randn(1, 8, S, device='cuda', dtype=bf) + 3
torch.cuda.synchronize(); [kern(q=q, k=k, v=v, i=i, f=f, chunk_size=64) for _ in range(3)]; torch.cuda.synchronize()" 2>/dev/null | tee "$OUT/ncu_raw_official.csv" \
    | python3 "$R/benchmarks/ncu_summary.py" --calls 3 > "$OUT/ncu_official.json"; echo "== official"; head -c 2500 "$OUT/ncu_official.json" ;;
ptxas) python3 "$R/benchmarks/ptxas_report.py" --out "$OUT/ptxas.json" ;;
*) echo "usage: gpu_job.sh tests-official|official|ours|kernel|model|selfcheck|tests|memory|ncu|ptxas" >&2; exit 2 ;;
esac
