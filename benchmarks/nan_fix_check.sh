#!/usr/bin/env bash
# After the one-chunk-group fix: repeat the variants that failed, then parity with the official model.
run() { timeout 120 python3 $R/benchmarks/repeat_runs.py --spec xlstm_7b --repeats ${REP:-6} "$@" > /tmp/v.json 2>>$OUT/err.txt
  python3 -c "import json,sys;d=json.load(open('/tmp/v.json'));print(sys.argv[1:],'nonfinite',d['nonfinite_runs'],'differ',d['differing_runs'])" "$@"; }
run --seq-len 64
run --seq-len 64 --dtype float32
run --seq-len 1032 --chunk-size 8
run --seq-len 1 
run --seq-len 64 --logits last
timeout 200 python3 $R/benchmarks/parity_7b.py --blocks 1 --prompt-len 100 --out $OUT/parity_1.json > /dev/null 2>>$OUT/err.txt; cat $OUT/parity_1.json
timeout 300 python3 $R/benchmarks/parity_7b.py --blocks 32 --prompt-len 64 --generate 12 --out $OUT/parity_32.json > /dev/null 2>>$OUT/err.txt; cat $OUT/parity_32.json
