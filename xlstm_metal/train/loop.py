"""Next-token training with MLX autograd: AdamW, warmup + cosine decay, gradient clipping, checkpoints that
``from_pretrained`` loads, and exact resume (batches are a function of (seed, step); the optimizer state is saved).
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from ..errors import InputError
from ..files import read_json, recover_dir, writer_lock
from ..fingerprint import architecture, describe, same
from ..modules import dtype_name
from ..tensorfile import read_header
from ..plan import make_plan
from ..runtime import execute
from ..memory import check_bytes
from ..token_ids import check_token_range
from .config import TrainConfig
from .data import TokenBatches
from .loss import chunked_head_loss, loss_chunk_tokens, mean_cross_entropy
from .plot import loss_curve_svg
from .progress import peak_memory, progress_line

TRAINER_STATE = "trainer_state.safetensors"
TRAINER_LOG = "trainer.json"


@dataclass
class TrainLog:
    steps: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    val: list[tuple[int, float]] = field(default_factory=list)
    tokens_per_s: float = 0.0


def lr_schedule(lr: float, steps: int, warmup: int, min_lr_ratio: float = 0.1):
    """Linear warmup to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``steps``."""
    warm = max(1, warmup)
    decay = optim.cosine_decay(lr, max(1, steps - warm), lr * min_lr_ratio)
    return optim.join_schedules([optim.linear_schedule(lr / warm, lr, warm), decay], [warm])


def compiles_step(compile: bool | None) -> bool:
    """Whether the training step runs under ``mx.compile``; None: on the GPU only. Compiling fuses elementwise
    chains into generated kernels, which saves launches on the GPU; on the CPU each fusion is C++ built by the
    system compiler at first use (tens of seconds for a model's step on a cold cache) and runs no faster."""
    return (mx.default_device().type == mx.DeviceType.gpu) if compile is None else bool(compile)


def make_step(model, loss_fn, opt, grad_clip: float, group=None, compile: bool | None = None):
    """``step(x, y) -> loss``: gradients of ``loss_fn(model, x, y)`` for the model's trainable parameters
    (averaged over ``group`` when data parallel), clipped to global norm ``grad_clip`` (0: off), applied by
    ``opt``; compiled per ``compiles_step(compile)`` unless data parallel (the random state is an input: dropout
    draws differ per step)."""
    loss_and_grad = nn.value_and_grad(model, loss_fn)

    def step(x, y):
        loss, grads = loss_and_grad(model, x, y)
        if group is not None:  # every rank saw an equal slice: the global gradient is the mean
            grads = nn.average_gradients(grads, group=group)
            loss = mx.distributed.all_sum(loss, group=group) / group.size()
        if grad_clip:
            grads, _ = optim.clip_grad_norm(grads, grad_clip)
        opt.update(model, grads)
        return loss

    if compiles_step(compile) and group is None:
        state = [model.state, opt.state, mx.random.state]
        return mx.compile(step, inputs=state, outputs=state)
    return step


def resumable_run(out: Path, graph, overwrite: bool = False, writer: bool = True, lora: dict | None = None) -> bool:
    """Whether ``out`` holds a training run of ``graph``'s architecture (to resume; with ``lora``, the
    adapter_config.json of a LoRA run: one with the same LoRA options). A new or empty directory holds none;
    anything else (files that are no run, a run of another architecture or kind) is refused unless ``overwrite``
    (then: False, start over), so training never replaces what it did not write. The ``writer`` (rank 0) first
    finishes a checkpoint swap that a crash interrupted."""
    out = Path(out)
    if writer:
        with writer_lock(out):
            recover_dir(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a directory; choose a directory for the checkpoint")
    if not out.exists() or not any(out.iterdir()):
        return False
    if not (out / TRAINER_LOG).is_file():
        if overwrite:
            return False
        raise InputError(f"--out {out} is not empty and holds no training run (no {TRAINER_LOG}); choose a new "
                         "or empty directory, or pass --overwrite to replace its contents")
    if overwrite:
        return False
    from .adapters import ADAPTER_CONFIG

    held = read_json(out / ADAPTER_CONFIG, InputError) if (out / ADAPTER_CONFIG).is_file() else None
    if held is not None and not isinstance(held, dict):
        raise InputError(f"{out / ADAPTER_CONFIG} must hold a JSON object; pass --overwrite to start over")
    if (held is None) != (lora is None):
        kinds = ("a LoRA run (adapter_config.json)", "a full training run") if lora is None else \
            ("a full training run", "a LoRA run")
        raise InputError(f"--out {out} holds {kinds[0]}, this is {kinds[1]}; choose another --out, or pass "
                         "--overwrite to replace that run")
    if lora is not None:
        if held.get("model") != lora["model"]:
            raise InputError(f"--out {out} holds adapters of the base {held.get('model')}, not of {lora['model']}; "
                             "choose another --out, or pass --overwrite to replace that run")
        if {k: held.get(k) for k in ("num_layers", "lora_parameters")} != \
                {k: lora[k] for k in ("num_layers", "lora_parameters")}:
            raise InputError(f"--out {out} holds a LoRA run with other options ({held.get('num_layers')} layers, "
                             f"{held.get('lora_parameters')}); use its options, another --out, or --overwrite")
        return True
    from ..checkpoint import open_checkpoint

    theirs, ours = architecture(open_checkpoint(out).graph), architecture(graph)
    if not same(theirs, ours):
        raise InputError(f"--out {out} holds a training run of {describe(theirs)}, not of {describe(ours)}; "
                         "choose another --out, or pass --overwrite to replace that run")
    return True


class Trainer:
    def __init__(self, runner, batches: TokenBatches, cfg: TrainConfig, out_dir: str | Path, *,
                 val_batches: TokenBatches | None = None, tokenizer_dir: str | Path | None = None,
                 config: dict[str, Any] | None = None, progress: bool = True, group=None, overwrite: bool = False,
                 lora=None, base: str | None = None):
        """``lora`` (a ``LoRAConfig``): train adapters on the (frozen) ``runner`` and save only them, with
        ``base`` (the checkpoint the runner was loaded from) named in adapter_config.json."""
        from ..distributed import world

        self.group = group or world()
        self.rank, self.world_size = self.group.rank(), self.group.size()
        if batches.batch_size % self.world_size:
            raise InputError(f"the global batch of {batches.batch_size} does not split over "
                             f"{self.world_size} ranks")
        progress = progress and self.rank == 0
        vocab = getattr(runner, "vocab_size", None)
        for name, data in (("training data", batches), ("validation data", val_batches)):
            if data is not None:  # one min/max over the token array: no step reads outside the embedding
                check_token_range(data.tokens, vocab, f"{name} token ids")
        vocab_out = getattr(runner.graph.node(runner.graph.outputs[0])["out_type"], "dim", None) or 0
        overrides = None
        if cfg.chunk_size:
            overrides = {n: {"chunk_size": cfg.chunk_size} for n in runner.graph.compute_nodes()
                         if runner.graph.node(n)["block_cls"].kernel_family}
        self.plan = make_plan(runner.graph, cfg.seq_len, dtype=dtype_name(runner.dtype), overrides=overrides,
                              segment_len=None, training=True)
        self.runner, self.batches, self.cfg = runner, batches, cfg
        per_rank = batches.batch_size // self.world_size
        self.loss_chunk = self._head_chunking(vocab_out, per_rank * cfg.seq_len)
        # float32 logits, their softmax and its gradient at least (of one chunk when the head runs in chunks)
        check_bytes(3 * 4 * (self.loss_chunk or per_rank * cfg.seq_len) * vocab_out, f"a training step of "
                    f"{per_rank} x {cfg.seq_len} tokens needs over {{need}}", "a smaller --batch-size or --seq-len")
        self.val_batches = val_batches
        self.out = Path(out_dir)
        self.tokenizer_dir, self.config, self.progress = tokenizer_dir, config, progress
        self.overwrite = overwrite  # replace whatever ``out_dir`` holds (another run, or files that are no run)
        self.lora, self.base = lora, base
        if lora is None and getattr(runner, "quantization", None):
            raise InputError(f"the model is quantized ({runner.quantization['bits']}-bit): its weights cannot be "
                             "trained directly; train LoRA adapters on it (lora=LoRAConfig(...)), or dequantize it "
                             "first (xlstm_metal.modules.dequantize_model)")
        if lora is not None:
            from .lora import apply_lora

            mx.random.seed(cfg.seed)  # the adapters' initial values
            apply_lora(runner.model, runner.graph, lora)
        schedule = lr_schedule(cfg.lr, cfg.steps, cfg.warmup, cfg.min_lr_ratio)
        self.optimizer = optim.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay)
        self.log = TrainLog()
        self.step = 0
        self.saved_step: int | None = None  # the step of the checkpoint in out_dir (None: none of this run yet)
        self.steps_run = 0  # steps taken by this process (0 after resuming a finished run)
        self._step_fn = self._build_step()

    @property
    def head_step(self):
        """The plan's step of the output the loss is taken on."""
        return next(s for s in self.plan.steps if s.node == self.runner.graph.outputs[0])

    def _head_chunking(self, vocab_out: int, tokens: int) -> int:
        """Tokens per chunk of the output head and loss (0: none); chunking needs a position-wise head on one
        float input."""
        graph, head = self.runner.graph, self.head_step
        if graph.block(head.node).stateful or len(head.inputs) != 1 or head.inputs[0] in graph.inputs:
            return 0
        return loss_chunk_tokens(self.cfg.loss_chunk, tokens, vocab_out)

    def loss(self, model, x, y):
        """Mean cross-entropy over the targets that carry loss (``IGNORE`` marks the others)."""
        graph, head = self.runner.graph, self.head_step
        if not self.loss_chunk:
            outs, _ = execute(graph, self.plan, x, training=True, checkpoint=self.cfg.checkpoint_blocks)
            return mean_cross_entropy(outs[head.node], y)
        outs, _ = execute(graph, self.plan, x, training=True, checkpoint=self.cfg.checkpoint_blocks,
                          outputs=list(head.inputs))
        return chunked_head_loss(graph.block(head.node), head.context(None, True), outs[head.inputs[0]], y,
                                 self.loss_chunk)

    def _build_step(self):
        group = self.group if self.world_size > 1 else None
        return make_step(self.runner.model, self.loss, self.optimizer, self.cfg.grad_clip, group, self.cfg.compile)

    def evaluate(self) -> float:
        if self.val_batches is None:
            return float("nan")
        losses = []
        self.runner.model.eval()  # no dropout
        try:
            for k in range(self.cfg.eval_batches):
                x, y = self.val_batches.batch(10_000_000 + k)  # fixed validation batches
                losses.append(float(self.loss(self.runner.model, mx.array(x), mx.array(y)).item()))
        finally:
            self.runner.model.train()
        return float(np.mean(losses))

    def save(self) -> None:
        if self.rank != 0:  # one writer; every rank holds identical weights
            return

        def write_trainer(tmp: Path):
            opt_state = dict(tree_flatten(self.optimizer.state))
            mx.save_safetensors(str(tmp / TRAINER_STATE), opt_state)
            log = {"step": self.step, "config": asdict(self.cfg), "log": asdict(self.log)}
            (tmp / TRAINER_LOG).write_text(json.dumps(log))
            loss_curve_svg(self.log.steps, self.log.losses, tmp / "loss.svg", val=self.log.val,
                           title=f"{self.runner.graph.name}: training loss")

        mx.eval(self.runner.model.parameters(), self.optimizer.state)
        if self.lora is not None:  # the adapters alone; the base stays where it is
            from .adapters import save_adapters

            save_adapters(self.out, self.runner.model, self.lora, self.base, extra=write_trainer)
            return
        self.runner.save_pretrained(self.out, config=self.config, tokenizer_dir=self.tokenizer_dir, overwrite=True,
                                    extra=write_trainer)

    def holds_this_run(self) -> bool:
        """Whether ``out_dir`` holds a training run of this architecture to resume (see ``resumable_run``)."""
        lora = None
        if self.lora is not None:
            from .adapters import adapter_config

            lora = adapter_config(self.lora, self.base)
        return resumable_run(self.out, self.runner.graph, self.overwrite, writer=self.rank == 0, lora=lora)

    def try_resume(self) -> bool:
        """Continue from ``out_dir`` if it holds a checkpoint of this run."""
        if not self.holds_this_run():
            return False
        from ..checkpoint import open_checkpoint

        log_path, state_path = self.out / TRAINER_LOG, self.out / TRAINER_STATE
        info = read_json(log_path, InputError)
        try:
            step, log = info["step"], TrainLog(**dict(info["log"], val=[tuple(v) for v in info["log"]["val"]]))
            if not isinstance(step, int) or step < 0:
                raise TypeError(step)
        except (KeyError, TypeError, ValueError):
            raise InputError(f"{log_path} is damaged (needs 'step' and 'log' as trainer writes them); pass "
                             "--overwrite to start over") from None
        if self.lora is not None:
            from .adapters import read_adapter_weights

            read_adapter_weights(self.out, self.runner.model)
        else:
            ckpt = open_checkpoint(self.out)
            ckpt.read(self.runner.model, ckpt.index(self.runner.model), dtype=self.runner.dtype, progress=False)
        if not state_path.is_file():
            raise InputError(f"{state_path} is missing; the run cannot resume exactly (pass --overwrite to start over)")
        read_header(state_path, InputError)
        self.optimizer.state = tree_unflatten(list(mx.load(str(state_path)).items()))
        self.step, self.log = step, log
        self._step_fn = self._build_step()
        return True

    def train(self, *, resume: bool = True, stop_after: int | None = None) -> TrainLog:
        with writer_lock(self.out) if self.rank == 0 else contextlib.nullcontext():
            return self._train(resume, stop_after)

    def _train(self, resume: bool, stop_after: int | None) -> TrainLog:
        if resume and self.try_resume():
            self.saved_step = self.step
            if self.progress:
                print(f"resumed at step {self.step}", file=sys.stderr)
        elif not resume:
            self.holds_this_run()  # refuses a directory this run may not replace
        try:
            self._loop(stop_after)
        except KeyboardInterrupt:
            if self.progress:
                print(f"\n{self.resume_hint()}", file=sys.stderr)
            raise
        if self.progress and self._tty:
            print(file=sys.stderr)
        return self.log

    def resume_hint(self) -> str:
        """Where the same command will continue (said when the run is interrupted)."""
        if self.saved_step is None:
            first = min(self.cfg.save_every, self.cfg.steps)
            return (f"interrupted at step {self.step}, before the first checkpoint (step {first}, --save-every): "
                    f"running the same command starts again at step 0")
        return (f"interrupted at step {self.step}: {self.out} holds step {self.saved_step}; running the same command "
                f"resumes there")

    @property
    def _tty(self) -> bool:
        return sys.stderr.isatty()

    def _loop(self, stop_after: int | None) -> None:
        cfg = self.cfg
        t_start = t_last = time.perf_counter()
        tokens_since, first = 0, self.step
        while self.step < cfg.steps:
            x, y = self.batches.batch(self.step)
            if self.world_size > 1:  # this rank's slice of the global batch
                per = x.shape[0] // self.world_size
                x, y = x[self.rank * per:(self.rank + 1) * per], y[self.rank * per:(self.rank + 1) * per]
            mx.random.seed(cfg.seed * 1_000_003 + self.step)  # dropout draws: a function of (seed, step), as batches
            loss = self._step_fn(mx.array(x), mx.array(y))
            mx.eval(loss, self.runner.model.parameters(), self.optimizer.state)
            self.step += 1
            self.steps_run += 1
            tokens_since += x.size * self.world_size
            loss_v = float(loss.item())
            if not math.isfinite(loss_v):
                raise FloatingPointError(f"loss became {loss_v} at step {self.step}; lower --lr or raise --warmup")
            self.log.steps.append(self.step)
            self.log.losses.append(loss_v)
            if self.val_batches is not None and (self.step % cfg.eval_every == 0 or self.step == cfg.steps):
                self.log.val.append((self.step, self.evaluate()))
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                now = time.perf_counter()
                self.log.tokens_per_s = tokens_since / max(now - t_last, 1e-9)
                t_last, tokens_since = now, 0
                self._bar(loss_v, (now - t_start) / (self.step - first) * (cfg.steps - self.step))
            if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                self.save()
                self.saved_step = self.step
            if stop_after is not None and self.step >= stop_after:
                break

    def _bar(self, loss: float, eta_s: float) -> None:
        if not self.progress:
            return
        val = self.log.val[-1][1] if self.log.val else None
        lr = float(self.optimizer.learning_rate.item())  # the rate the last step used
        line = progress_line(self.step, self.cfg.steps, loss, lr, self.log.tokens_per_s, peak_memory(), eta_s, val)
        print(line if not self._tty else f"\r{line}\033[K", end="\n" if not self._tty else "", file=sys.stderr,
              flush=True)
