"""Run under ``mlx.launch -n N --backend ring`` (or alone, as the single-process reference).

    python worker.py tp SPEC OUT.npz        head-parallel prefill + greedy decode
    python worker.py dp OUT.npz STEPS B     data-parallel training, per-rank batch B
"""
import sys

import mlx.core as mx
import numpy as np
from mlx.utils import tree_flatten

from xlstm_metal import xLSTMRunner
from xlstm_metal.distributed import gather_state, shard_heads, world

DP_SPEC = {
    "name": "dp", "dims": {"d": 32, "vocab": 50},
    "nodes": [
        {"name": "backbone.embeddings", "type": "embedding", "inputs": ["tokens"], "num_embeddings": "vocab", "dim": "d"},
        {"name": "n", "type": "rms_norm", "inputs": ["backbone.embeddings"]},
        {"name": "m", "type": "mlstm", "inputs": ["n"], "num_heads": 2, "chunk_size": 4},
        {"name": "f", "type": "swiglu", "inputs": ["n"], "proj_factor": 2.0, "round_up_to": 8},
        {"name": "o", "type": "add", "inputs": ["backbone.embeddings", "m", "f"]},
        {"name": "lm_head", "type": "lm_head", "inputs": ["o"], "vocab_size": "vocab"}],
    "outputs": ["lm_head"],
}


def tp(spec, out):
    group = world()
    runner = xLSTMRunner.from_spec(spec, seed=0)
    owned = shard_heads(runner, group)
    prompt = mx.array(np.random.default_rng(0).integers(0, 64, size=(2, 21)), dtype=mx.int32)
    logits, state = runner(prompt)
    tok = mx.argmax(logits[:, -1], axis=-1)
    tokens = []
    for _ in range(6):
        tokens.append(np.array(tok))
        lg, state = runner(tok[:, None], state)
        tok = mx.argmax(lg[:, -1], axis=-1)
    full = gather_state(runner, state, group)
    if group.rank() == 0:
        np.savez(out, logits=np.array(logits), tokens=np.stack(tokens, 1),
                 **{f"state_{i}": np.array(a) for i, a in enumerate(full.arrays())}, plan=str(runner.plan(21)),
                 owned=str({k: str(v) for k, v in owned.items()}))


def dp(out, steps, per_rank):
    from xlstm_metal.train import TokenBatches, TrainConfig, Trainer

    group = world()
    runner = xLSTMRunner.from_spec(DP_SPEC, seed=0)
    data = np.tile(np.arange(50, dtype=np.int32), 40)
    cfg = TrainConfig(steps=steps, batch_size=per_rank * group.size(), seq_len=12, lr=1e-2, warmup=2, save_every=10**9,
                      compile=False)
    Trainer(runner, TokenBatches(data, per_rank * group.size(), 12, seed=5), cfg, "/tmp/unused-dp", progress=False,
            group=group).train(resume=False)
    if group.rank() == 0:
        np.savez(out, **{k: np.array(v) for k, v in tree_flatten(runner.model.parameters())})


if __name__ == "__main__" and sys.argv[1] == "tp":
    tp(sys.argv[2], sys.argv[3])
elif __name__ == "__main__" and sys.argv[1] == "dp":
    dp(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))


def load(ckpt, out):
    """from_pretrained(shard=True): each rank reads its slices; prefill logits must match."""
    group = world()
    runner = xLSTMRunner.from_pretrained(ckpt, shard=True)
    m = runner.graph.block("backbone.blocks.0.mlstm_layer")
    assert m.proj_in.weight.shape[0] == 2 * m.qk_dim + 2 * m.v_dim + 2 * m.local_heads  # this rank's rows only
    x = mx.array(np.random.default_rng(0).integers(0, 64, size=(1, 9)), dtype=mx.int32)
    logits, _ = runner(x)
    mx.eval(logits)
    if group.rank() == 0:
        np.savez(out, logits=np.array(logits), q_rows=runner.graph.block("backbone.blocks.0.mlstm_layer").qk_dim)


if __name__ == "__main__" and sys.argv[1] == "load":
    load(sys.argv[2], sys.argv[3])
