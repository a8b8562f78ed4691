#!/usr/bin/env bash
# GPU job (after gpu_env.sh): chunkwise variants, then an nsys kernel summary of the eager kernel at 4k.
timeout 200 python3 $R/benchmarks/profile_chunkwise.py --seqs 1024,4096,16384 --out $OUT/variants.json > /dev/null 2>>$OUT/err.txt
python3 -c "import json;d=json.load(open('$OUT/variants.json'));print({k:v for k,v in d.items() if 'ms' in k or 'peak' in k})"
which nsys && timeout 200 nsys profile -o /tmp/prof --force-overwrite true python3 $R/benchmarks/profile_chunkwise.py --seqs 4096 --only eager_L64 --iters 20 > /dev/null 2>>$OUT/err.txt && nsys stats --report cuda_gpu_kern_sum --format csv -o $OUT/kern /tmp/prof.nsys-rep > /dev/null 2>>$OUT/err.txt; ls $OUT; head -25 $OUT/kern*.csv | cut -c1-220
