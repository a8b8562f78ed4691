"""Parity with the official xLSTMLarge at the 7B shapes on the GPU (random weights); prints JSON.

    python benchmarks/parity_7b.py --blocks 1 --out layer.json     # logits of one 7B-shape layer, bf16
    python benchmarks/parity_7b.py --blocks 32 --generate 16        # full model, greedy tokens
    python benchmarks/parity_7b.py --blocks 8 --study --generate 12  # float32 truth: how far is each bf16 run?
    python benchmarks/parity_7b.py --blocks 32 --dtype float32 --official-kernels native --generate 12

``--study`` builds the official model in float32 (kernel autocast float32) as ground truth and reports,
against it, ours in float32, ours in bfloat16 and the official model cast to bfloat16: random-weight
networks amplify rounding layer by layer, so bf16-vs-bf16 agreement alone cannot tell a bug from rounding.

The official model is saved in the Hugging Face layout and loaded with from_pretrained, exactly
as a user's checkpoint would be.
"""
from __future__ import annotations

import argparse
import copy
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from xlstm.xlstm_large.model import xLSTMLarge, xLSTMLargeConfig
from common import emit


def agreement(got: np.ndarray, ref: np.ndarray) -> dict:
    diff = np.abs(got - ref)
    return {"rel_max_diff": float(diff.max() / np.abs(ref).max()), "mean_abs_diff": float(diff.mean()),
            "argmax_agreement": float((got.argmax(-1) == ref.argmax(-1)).mean()),
            "finite": bool(np.isfinite(got).all())}


def study(official, d, x, dev: str) -> dict:
    """Ours (f32, bf16) and the official model cast to bf16, each against the official float32 logits."""
    import mlx.core as mx

    from xlstm_metal import xLSTMRunner

    with torch.no_grad():
        ref32 = official(torch.as_tensor(x, device=dev))[0].float().cpu().numpy()
    out = {}
    for dtype in ("float32", "bfloat16"):
        ours = xLSTMRunner.from_pretrained(d, dtype=dtype)
        got = np.array(ours(mx.array(x, dtype=mx.int32))[0].astype(mx.float32))
        out[f"ours_{dtype}_vs_official_float32"] = agreement(got, ref32)
        del ours
    official16 = copy.deepcopy(official).to(torch.bfloat16)
    try:
        with torch.no_grad():
            ref16 = official16(torch.as_tensor(x, device=dev))[0].float().cpu().numpy()
        out["official_bfloat16_vs_official_float32"] = agreement(ref16, ref32)
    except RuntimeError as exc:  # the official native kernels reject bf16 weights with float32 autocast
        out["official_bfloat16_vs_official_float32"] = {"error": str(exc)[:200]}
    del official16
    return out


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--blocks", type=int, default=1)
    p.add_argument("--prompt-len", type=int, default=100)
    p.add_argument("--generate", type=int, default=0)
    p.add_argument("--study", action="store_true",
                   help="float32 ground truth; compare ours f32/bf16 and official bf16 to it")
    p.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16", help="both models' dtype")
    p.add_argument("--embedding-dim", type=int, default=4096)
    p.add_argument("--num-heads", type=int, default=8)
    p.add_argument("--vocab-size", type=int, default=50304)
    p.add_argument("--device", default="cuda", help="the official model's torch device")
    p.add_argument("--official-kernels", choices=["triton", "native"], default="triton",
                   help="native: the official package's PyTorch kernels with TF32 off (Triton's dots round to TF32)")
    p.add_argument("--out")
    a = p.parse_args(argv)
    cfg = dict(embedding_dim=a.embedding_dim, num_heads=a.num_heads, num_blocks=a.blocks, vocab_size=a.vocab_size,
               ffn_proj_factor=2.667, chunk_size=64, weight_mode="single")
    dev, f32 = a.device, a.study or a.dtype == "float32"
    torch.manual_seed(0)
    kernels = dict(chunkwise_kernel="chunkwise--triton_limit_chunk", sequence_kernel="native_sequence__triton",
                   step_kernel="triton")
    if a.official_kernels == "native":
        kernels = dict(chunkwise_kernel="chunkwise--native_autograd", sequence_kernel="native_sequence__native",
                       step_kernel="native")
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    with torch.device(dev):
        official = xLSTMLarge(xLSTMLargeConfig(**cfg, mode="inference", return_last_states=True,
                                               **kernels,
                                               autocast_kernel_dtype="float32" if f32 else "bfloat16"))
        official = official.to(torch.float32 if f32 else torch.bfloat16).eval()
    with torch.no_grad():
        for name, prm in official.named_parameters():  # gate biases too, so nothing is trivially zero
            if "gate_preact.bias" in name:
                prm.copy_(torch.randn_like(prm) * 2)
    res = {"blocks": a.blocks, "dtype": "float32" if f32 else "bfloat16", "official_kernels": kernels,
           "device": torch.cuda.get_device_name() if dev == "cuda" else dev}
    with tempfile.TemporaryDirectory() as d:
        weights = {("backbone.embeddings.weight" if k == "embedding.weight" else k): v.contiguous().cpu()
                   for k, v in official.state_dict().items()}
        save_file(weights, str(Path(d) / "model.safetensors"))
        del weights
        (Path(d) / "config.json").write_text(json.dumps(dict(cfg, torch_dtype="float32" if f32 else "bfloat16",
                                                             model_type="xlstm")))
        import mlx.core as mx

        from xlstm_metal import xLSTMRunner

        x = np.random.default_rng(0).integers(0, a.vocab_size, size=(1, a.prompt_len))
        if a.study:
            res["study"] = study(official, d, x, dev)
        ours = xLSTMRunner.from_pretrained(d, dtype="float32" if f32 else "bfloat16")
        with torch.no_grad():
            ref, ref_state = official(torch.as_tensor(x, device=dev))
        ref = ref.float().cpu().numpy()
        got, state = ours(mx.array(x, dtype=mx.int32))
        got = np.array(got.astype(mx.float32))
        diff = np.abs(got - ref)
        res.update(max_abs_logit_diff=float(diff.max()), mean_abs_logit_diff=float(diff.mean()),
                   max_abs_logit=float(np.abs(ref).max()), rel_max_diff=float(diff.max() / np.abs(ref).max()),
                   argmax_agreement=float((got.argmax(-1) == ref.argmax(-1)).mean()),
                   finite=bool(np.isfinite(got).all()))
        # Random weights give flat logits: where the argmaxes differ, how close was the official model's
        # own call? (its top-1 logit minus its logit for our top-1)
        flat_ref = ref.reshape(-1, ref.shape[-1])
        top_ours, top_ref = got.reshape(-1, got.shape[-1]).argmax(-1), flat_ref.argmax(-1)
        rows = np.nonzero(top_ours != top_ref)[0]
        margins = (flat_ref[r, top_ref[r]] - flat_ref[r, top_ours[r]] for r in rows)
        res["disagreement_official_margin_max"] = float(max(margins, default=0.0))
        if a.generate:
            tok_ref, st = [], ref_state
            nxt = int(ref[0, -1].argmax())
            with torch.no_grad():
                for _ in range(a.generate):
                    tok_ref.append(nxt)
                    lg, st = official(torch.tensor([[nxt]], device=dev), st)
                    nxt = int(lg[0, -1].float().argmax())
            tok_ours = [r.token for r in ours.stream(x[0].tolist(), max_tokens=a.generate, eos_token_ids=set())]
            same = 0
            for u, v in zip(tok_ours, tok_ref):
                if u != v:
                    break
                same += 1
            res.update(greedy_tokens_ours=tok_ours, greedy_tokens_official=tok_ref, identical_prefix=same)
    emit(res, a.out)


if __name__ == "__main__":
    main()
