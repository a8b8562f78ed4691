#!/usr/bin/env bash
# Source after `bash .device/stage.sh b` on the GPU machine: our package importable as xlstm_metal
# (blocks/kernels/specs placed the way the wheel installs them), benchmarks importable, $R = repo root.
R=$PWD
rm -rf /tmp/xm && mkdir -p /tmp/xm && cp -r xlstm_metal /tmp/xm/ && cp -r blocks kernels wiring_specs /tmp/xm/xlstm_metal/
export PYTHONPATH=/root/site:/tmp/xm:$R/benchmarks PYTHONUNBUFFERED=1
export R
