"""``xLSTMRunner``: build a model from a spec (or a checkpoint), run it, keep its state, generate."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import mlx.core as mx
import numpy as np

from xlstm_metal.kernels import current_device
from xlstm_metal.modes import in_inference_mode

from . import fast_blas
from .errors import InputError
from .graph import ModelGraph, build_graph
from .memory import check_bytes, check_fits_in_memory
from .modules import GraphModule, as_dtype, cast_parameters, dtype_name, quantize_model
from .plan import DEFAULT_SEGMENT_LEN, ExecutionPlan, make_plan
from .runtime import execute, init_state
from .state import State
from .token_ids import TokenIdError, as_tokens, input_vocab

def check_tokenizer_fits(tokenizer, vocab: int | None, directory: Path) -> None:
    """A tokenizer with more tokens than the embedding table would hand the model ids it cannot read."""
    if tokenizer is not None and vocab is not None and tokenizer.vocab_size > vocab:
        raise TokenIdError(f"{Path(directory) / 'tokenizer.json'}: the tokenizer has {tokenizer.vocab_size} tokens "
                           f"but the model's embedding has {vocab} (config.json vocab_size); use the tokenizer the "
                           f"checkpoint was trained with")


class xLSTMRunner:
    """Runs a ``ModelGraph`` on MLX.

    ``runner(tokens, state) -> (logits, state)`` processes any number of tokens, continuing from
    ``state`` (``None`` = fresh). Prefill runs in the plan's segments, evaluating layer by layer to bound
    memory, with ``eval_ahead`` layers left queued on the GPU while the host builds the next (each costs a
    layer's temporaries); single-token decoding runs a compiled function, without Python overhead per block.
    """

    def __init__(self, graph: ModelGraph, *, dtype: Any = "float32", tokenizer=None, config: dict | None = None,
                 compile: bool = True, segment_len: int | None = DEFAULT_SEGMENT_LEN, eval_ahead: int = 1):
        self.graph = graph
        self.dtype = as_dtype(dtype)
        self.model = GraphModule(graph)
        self.vocab_size = input_vocab(graph)  # ids in [0, vocab_size) are read from the embedding table
        if self.dtype != mx.float32:
            cast_parameters(self.model, self.dtype)
        self.tokenizer = tokenizer
        self.config = config or {}
        self.compile = compile
        self.segment_len = segment_len
        if isinstance(eval_ahead, bool) or not isinstance(eval_ahead, int) or eval_ahead < 0:
            raise InputError(f"eval_ahead must be an int >= 0 (layers left in flight during prefill; 0: wait at each), "
                             f"got {eval_ahead!r}")
        self.eval_ahead = eval_ahead
        self.quantization: dict | None = None  # {"group_size", "bits", "mode"} once quantized
        self.sharding: dict = {}  # node -> ShardInfo under head parallelism (xlstm_metal.distributed)
        self.shard_slices: dict = {}  # parameter key -> the pieces this rank holds
        self.overrides: dict[str, dict[str, Any]] = {}
        self._plans: dict[int, ExecutionPlan] = {}
        self._decode_fn: dict[bool, Any] = {}  # the compiled decode step per inference mode
        if current_device() == "cpu":  # MLX with its reference BLAS (no fast one found): say so, once
            fast_blas.warn_once()

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_spec(cls, spec: Any, *, dtype: Any = "float32", seed: int | None = 0, **kw) -> "xLSTMRunner":
        """Build a model with freshly initialised weights from a spec (path, shipped name, YAML, dict)."""
        if seed is not None:
            mx.random.seed(seed)
        graph = build_graph(spec)
        graph.require_memory(as_dtype(dtype))  # refuse sizes MLX cannot allocate before it tries (it would crash)
        return cls(graph, dtype=dtype, **kw)

    @classmethod
    def from_pretrained(cls, path: str | Path, *, dtype: Any = None, shard: Any = False, progress: bool | None = None,
                        tokenizer: bool = True, **kw) -> "xLSTMRunner":
        """Load a Hugging Face style directory (config.json, safetensors, tokenizer.json), or a Hub repo id
        (``org/name[@revision]``: the local cache, else a download); every key and
        shape is checked before a weight is read (``checkpoint.CheckpointError`` names what is wrong).

        ``dtype``: None keeps the checkpoint's. ``shard``: a distributed group (or True for the launched
        world): each rank keeps, and reads, only its heads / FFN columns of every tensor.
        """
        from .checkpoint.load import consistently

        return consistently(path, lambda: cls._from_checkpoint(path, dtype, shard, progress, tokenizer, **kw))

    @classmethod
    def _from_checkpoint(cls, path, dtype, shard, progress, tokenizer, **kw) -> "xLSTMRunner":
        from .checkpoint import load_tokenizer, open_checkpoint

        ckpt = open_checkpoint(path)
        q = ckpt.quantization
        if not shard:  # (sharded, each rank holds a part: how many share this machine's memory is the launcher's)
            check_fits_in_memory(ckpt.graph, q["bits"] / 8 if q else as_dtype(dtype or ckpt.dtype).size)
        runner = cls(ckpt.graph, dtype=dtype or ckpt.dtype, config=ckpt.config, **kw)
        if ckpt.quantization:
            quantize_model(runner.model, ckpt.quantization)
            runner.quantization = ckpt.quantization
        index = ckpt.index(runner.model)
        if shard:
            from .distributed import shard_heads, world

            shard_heads(runner, world() if shard is True else shard)
        ckpt.read(runner.model, index, dtype=runner.dtype, slices=runner.shard_slices, progress=progress)
        if tokenizer:
            runner.tokenizer = load_tokenizer(ckpt.directory)
            check_tokenizer_fits(runner.tokenizer, runner.vocab_size, ckpt.directory)
        ckpt.unchanged()  # config, weights and tokenizer are of one version
        return runner

    # ------------------------------------------------------------------ planning
    def plan(self, seq_len: int) -> ExecutionPlan:
        """The plan for inputs of ``seq_len`` tokens under this runner's dtype, overrides and segment length."""
        if seq_len not in self._plans:
            if len(self._plans) > 64:
                self._plans.clear()
            plan = make_plan(self.graph, seq_len, dtype=dtype_name(self.dtype),
                             overrides=self.overrides or None, segment_len=self.segment_len,
                             quantized=self.quantization is not None)
            plan.sharding = {n: str(info) for n, info in self.sharding.items()}
            self._plans[seq_len] = plan
        return self._plans[seq_len]

    def set_segment_len(self, segment_len: int | None) -> None:
        """Prefill in segments of this many tokens (``None``: one segment) for every later plan."""
        self.segment_len = segment_len
        self._plans.clear()

    def set_overrides(self, overrides: dict[str, dict[str, Any]]) -> None:
        """Per-node ``{"kernel": ..., "chunk_size": ...}`` overrides for every later plan."""
        self.overrides = dict(overrides)
        self._plans.clear()
        self._decode_fn = {}

    # ------------------------------------------------------------------ running
    def init_state(self, batch_size: int = 1) -> State:
        return init_state(self.graph, batch_size)

    def __call__(self, tokens: Any, state: State | None = None, *, mask: Any = None,
                 logits: str = "all") -> tuple[mx.array, State]:
        """Logits ``[B, S, V]`` (``logits="last"``: ``[B, 1, V]``) and the state after the tokens.

        ``mask`` ([B, S] bool, True = real token) marks padding: padded positions do not change
        any recurrent state, so a left-padded batch behaves like each row alone.
        """
        outs, state = self.run(tokens, state, mask=mask, last_only=(logits == "last"))
        return outs[self.graph.outputs[0]], state

    def run(self, tokens: Any, state: State | None = None, *, mask: Any = None,
            last_only: bool = False) -> tuple[dict[str, mx.array], State]:
        """Every output node's value and the state after ``tokens`` (ids checked against the vocabulary)."""
        return self._run(as_tokens(tokens, self.vocab_size), state, mask=mask, last_only=last_only)

    def prefill(self, prompt: Any, state: State | None = None) -> State:
        """The state after reading ``prompt`` (text needs a tokenizer; token ids always work), e.g. to save a long
        system prompt once and continue from it later."""
        if isinstance(prompt, str):
            if self.tokenizer is None:
                raise TokenIdError("a text prompt needs a tokenizer; pass token ids or load a model with "
                                   "tokenizer.json")
            prompt = self.tokenizer.encode(prompt)
        _, state = self(prompt, state, logits="last")
        return state

    def _run(self, tokens: mx.array, state: State | None, *, mask: Any = None,
             last_only: bool = False) -> tuple[dict[str, mx.array], State]:
        B, S = tokens.shape
        if not last_only and S > 1:  # the logits of every position (a lower bound of what the call needs)
            width = getattr(self.graph.node(self.graph.outputs[0])["out_type"], "dim", None) or 0
            check_bytes(B * S * width * self.dtype.size, f"logits for {B} x {S} tokens need {{need}}",
                        "fewer tokens per call, or logits='last'")
        if mask is not None:
            mask = mask if isinstance(mask, mx.array) else mx.array(np.asarray(mask, dtype=bool))
            if tuple(mask.shape) != (B, S):
                raise InputError(f"mask must have the tokens' shape {(B, S)}, got {tuple(mask.shape)}")
            mask = mask.astype(mx.bool_)
        state = state.checked_for(self.graph) if state is not None else None
        if state is not None and state.batch_size not in (None, B):
            raise InputError(f"state is for batch size {state.batch_size}, tokens have batch size {B}")
        if S == 1 and mask is None and self.compile and len(self.graph.outputs) == 1 and self._compilable():
            return self._decode(tokens, state)
        # layer by layer and segment by segment: eval_ahead + 1 layers' temporaries at a time
        return execute(self.graph, self.plan(S), tokens, state, mask=mask, eval_every="stateful",
                       eval_ahead=self.eval_ahead, last_only=last_only)

    def _compilable(self) -> bool:
        """Compiled decoding needs fixed state shapes (a growing KV cache would recompile every token)."""
        return all(self.graph.node(n)["block_cls"].fixed_size_state for n in self.graph.stateful_nodes())

    def _decode(self, tokens: mx.array, state: State | None) -> tuple[dict[str, mx.array], State]:
        if state is None:
            state = self.init_state(tokens.shape[0])
        # one compiled step per mode: traced in inference mode it holds the fused kernels bare, else with their
        # gradients (kernels/reference_gradient.py)
        bare = in_inference_mode()
        if bare not in self._decode_fn:
            plan = self.plan(1)
            graph = self.graph

            def decode(tok, entries):
                outs, st = execute(graph, plan, tok, State(entries))
                return outs[graph.outputs[0]], st.entries

            self._decode_fn[bare] = mx.compile(decode, inputs=[self.model.state])
        logits, entries = self._decode_fn[bare](tokens, state.entries)
        return {self.graph.outputs[0]: logits}, State(entries, state.tokens_seen + 1, dict(state.metadata))

    # ------------------------------------------------------------------ generation
    def _checked(self, prompt: Any, what: str = "the prompt") -> Any:
        """A token-id prompt checked against the vocabulary (text is the tokenizer's: checked when it is loaded)."""
        if isinstance(prompt, str):
            return prompt
        as_tokens(prompt, self.vocab_size, what)
        return prompt

    def _model_fn(self):
        """The generation loop's model: the prompt (first call) is checked against the vocabulary; sampled tokens
        come from the lm_head's logits and need no check unless the lm_head is wider than the embedding."""
        out_dim = getattr(self.graph.node(self.graph.outputs[0])["out_type"], "dim", None)
        trust_samples = self.vocab_size is None or (isinstance(out_dim, int) and out_dim <= self.vocab_size)
        calls = 0

        def model_fn(tokens, state=None, mask=None):
            nonlocal calls
            calls += 1
            if calls == 1 or not trust_samples:
                tokens = as_tokens(tokens, self.vocab_size, "the prompt" if calls == 1 else "a generated token")
            outs, state = self._run(tokens, state, mask=mask, last_only=True)
            return outs[self.graph.outputs[0]], state
        return model_fn

    def generate(self, prompt: Any, **kw) -> str:
        """Generate text from a prompt (text needs a tokenizer; token ids always work). See ``stream``."""
        from .generation import generate as _generate

        kw.setdefault("eos_token_ids", self.eos_token_ids)
        return _generate(self._model_fn(), self.tokenizer, self._checked(prompt), **kw)

    def stream(self, prompt: Any, **kw) -> Iterator[Any]:
        """Yield ``GenerationResponse`` objects (text piece, token, tokens/s, peak memory, state).

        Sampling: ``temperature``, ``top_p``, ``top_k``, ``min_p``, ``repetition_penalty``, ``seed``;
        stopping: ``max_tokens``, ``stop`` strings, EOS; ``state`` continues an earlier conversation.
        """
        from .generation import stream_generate

        kw.setdefault("eos_token_ids", self.eos_token_ids)
        yield from stream_generate(self._model_fn(), self.tokenizer, self._checked(prompt), **kw)

    def batch_generate(self, prompts: list, **kw) -> list:
        """Prompts of different lengths in one batch; padding is masked out of the recurrent state."""
        from .generation import batch_generate

        kw.setdefault("eos_token_ids", self.eos_token_ids)
        return batch_generate(self._model_fn(), self.tokenizer, [self._checked(p, f"prompt {i}")
                                                                 for i, p in enumerate(prompts)], **kw)

    def quantize(self, bits: int = 4, group_size: int = 64, mode: str = "affine") -> "xLSTMRunner":
        """Quantize the weights in place with MLX's quantization (layers whose rows split into groups)."""
        if self.quantization:
            raise InputError(f"already quantized: {self.quantization}")
        q = {"group_size": int(group_size), "bits": int(bits), "mode": mode}
        quantize_model(self.model, q)
        self.quantization = q
        self._decode_fn = {}
        self._plans.clear()
        return self

    def save_pretrained(self, path: str | Path, *, config: Any = None, **kw) -> Path:
        """Write a directory that ``from_pretrained`` (and the official package) loads, atomically."""
        from .checkpoint.save import save_pretrained

        return save_pretrained(path, self.model, self.graph, dtype=self.dtype, quantization=self.quantization,
                               config=self.config if config is None else config, **kw)

    @property
    def eos_token_ids(self) -> set[int]:
        cfg = self.config
        ids = cfg.eos_ids() if hasattr(cfg, "eos_ids") else cfg.get("eos_token_id") if isinstance(cfg, dict) else None
        ids = {ids} if isinstance(ids, int) else set(ids or ())
        if self.tokenizer is not None:
            ids |= set(getattr(self.tokenizer, "eos_token_ids", ()) or ())
        return ids

    # ------------------------------------------------------------------ info
    def num_parameters(self) -> int:
        return self.graph.num_parameters()

    def __repr__(self) -> str:
        nodes = len(self.graph.compute_nodes())
        return f"xLSTMRunner('{self.graph.name}', {nodes} nodes, dtype={dtype_name(self.dtype)})"
