#!/usr/bin/env bash
# GPU job (after gpu_env.sh): 7B-shape parity study against a float32 official model, then the GPU test run.
timeout 330 python3 $R/benchmarks/parity_7b.py --blocks 8 --study --prompt-len 100 --generate 12 --out $OUT/study_8.json > /dev/null 2>>$OUT/err.txt
python3 -c "import json;d=json.load(open('$OUT/study_8.json'));[print(k,v) for k,v in d.items()]"
mkdir -p /tmp/xtests && cp -r $R/tests/* /tmp/xtests/ && cd /tmp && timeout 200 python3 -m pytest -q -p no:cacheprovider -x -q /tmp/xtests/kernels /tmp/xtests/runner 2>&1 | tail -n 8
