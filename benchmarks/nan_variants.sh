#!/usr/bin/env bash
# Issue 4 NaN hunt on the GPU machine (after gpu_env.sh): which run variant makes a 64-token
# prefill of the 7B-shape model deterministic? One line per variant.
run() { timeout 120 python3 $R/benchmarks/repeat_runs.py --spec xlstm_7b --repeats ${REP:-6} "$@" > /tmp/v.json 2>>$OUT/err.txt
  python3 -c "import json,sys;d=json.load(open('/tmp/v.json'));print(sys.argv[1:],'nonfinite',d['nonfinite_runs'],'differ',d['differing_runs'])" "$@"; }
run --seq-len 64
run --seq-len 64 --eval-params
run --seq-len 64 --eval-every none
run --seq-len 64 --eval-every node
run --seq-len 64 --chunk-size 32
run --seq-len 64 --kernel native_sequence
run --seq-len 64 --dtype float32
run --seq-len 65
run --seq-len 128
run --seq-len 256
