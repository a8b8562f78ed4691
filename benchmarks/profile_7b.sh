#!/usr/bin/env bash
# GPU job (after gpu_env.sh): nsys kernel summary of a 7B bf16 4k-token prefill, top kernels by GPU time.
NSYS=$(command -v nsys || ls /opt/nvidia/nsight-systems/*/bin/nsys /usr/local/cuda*/bin/nsys 2>/dev/null | head -1)
[ -z "$NSYS" ] && NSYS=$(find / -name nsys -type f -perm -u+x 2>/dev/null | head -1)
echo "nsys: $NSYS"
cd /tmp
timeout 300 $NSYS profile --trace=cuda -o /tmp/p --force-overwrite true python3 $R/benchmarks/bench_model.py --spec xlstm_7b \
    --dtype bfloat16 --prefill ${PREFILL:-4096} --decode-context 16 --decode-steps 8 --iters 1 > /dev/null 2>>$OUT/err.txt
$NSYS stats --report cuda_gpu_kern_sum --format csv -o $OUT/kern /tmp/p.nsys-rep > /dev/null 2>>$OUT/err.txt
head -30 $OUT/kern*.csv | cut -d, -f1-4,9 | cut -c1-230
