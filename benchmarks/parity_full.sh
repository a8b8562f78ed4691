#!/usr/bin/env bash
# GPU job (after gpu_env.sh; an H200 for the memory): the 32-layer 7B-shape parity study in float32.
timeout 560 python3 $R/benchmarks/parity_7b.py --blocks 32 --study --prompt-len 64 --generate 12 ${EXTRA:-} --out $OUT/study_32.json > /dev/null 2>>$OUT/err.txt
python3 -c "import json;d=json.load(open('$OUT/study_32.json'));[print(k,v) for k,v in d.items()]"
