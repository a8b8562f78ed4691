#!/usr/bin/env bash
# GPU job (after gpu_env.sh): after the elementwise fusions — prefill ablation, 7B benchmark, decode floor.
cd /tmp
timeout 150 python3 $R/benchmarks/ablate_prefill.py --spec xlstm_7b --seq-len 4096 --out $OUT/ablate_4096.json 2>>$OUT/err.txt | tr -d '\n '; echo
timeout 200 python3 $R/benchmarks/bench_model.py --spec xlstm_7b --dtype bfloat16 --prefill 1024,4096 --decode-context 128 \
    --decode-steps 30 --iters 2 --official $R/benchmarks/results/h100_official.json --out $OUT/7b.json > /dev/null 2>>$OUT/err.txt
python3 -c "import json;d=json.load(open('$OUT/7b.json'));print({k:v for k,v in d.items() if k!='official'})"
timeout 120 python3 $R/benchmarks/decode_floor.py --spec xlstm_7b --out $OUT/floor.json 2>>$OUT/err.txt | tr -d '\n '; echo
