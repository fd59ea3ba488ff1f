"""The vLLM rollout engine: colocated `vllm.LLM`, or a client of `reasoner serve` (server mode).

Selected with `engine.name: vllm`; options go under `engine.vllm` (`reasoner.rollout.vllm_options`). The
engine keeps its own copy of the weights, so after every optimizer step the trainer calls `sync_weights(model)`:
the weights go to vLLM's workers through a worker extension (`reasoner.rollout.vllm_worker`) and
`LLM.collective_rpc`, then the prefix cache is reset (without the reset, prompts longer than one KV-cache block
are served from keys and values computed with the old weights). The trainer then checks the sync with a probe
(reasoner.training.sync_check).

Log-probs: the engine contract is `log softmax(logits / T)` at the sampled token, before top-p/top-k truncation.
vLLM reports either `raw_logprobs` (before temperature) or `processed_logprobs` (after temperature *and* after
top-p/top-k truncation). The default, `processed_logprobs`, meets the contract exactly when top-p = 1 and
top-k = 0; `raw_logprobs` meets it when T = 1. Other combinations are refused with an error rather than returning
log-probs of another distribution.

Every call into vLLM runs under a timeout (`timeout_s`): a call that does not return becomes an `EngineError`
instead of a hang, and the engine refuses further calls (its state is unknown).

Memory (GPU colocation): `gpu_memory_utilization` is the share of GPU memory vLLM takes (weights + KV cache); the
rest is training's. `sleep_level` 1 or 2 frees vLLM's memory between rollouts (`LLM.sleep`) and brings it back
at the next weight sync (`wake_up(tags=["weights"])`, load, `wake_up(tags=["kv_cache"])`), as TRL does; level 2
also discards the weights, which is safe here because every sync re-sends all of them. vLLM's CPU backend has
no sleep mode.
"""
from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from reasoner.rollout.base import Completion, EngineError, RolloutEngine, SamplingParams, eos_token_ids
from reasoner.rollout.vllm_options import VLLMOptions

WORKER_EXTENSION = "reasoner.rollout.vllm_worker.WeightSyncExtension"


class VLLMEngine(RolloutEngine):
    """A colocated `vllm.LLM` that samples with the trainer's current weights after each `sync_weights`."""

    owns_weights = True  # the trainer must sync it, and verifies each sync with a probe

    @classmethod
    def from_model(cls, model, tokenizer, opts: VLLMOptions) -> VLLMEngine:
        """A colocated engine for `model`, loaded from its folder and then synced to its current weights."""
        engine = cls(_model_source(model), opts, dtype=_dtype_name(model, opts),
                     eos_ids=eos_token_ids(model, tokenizer))
        engine.sync_weights(model)  # the engine now serves exactly the trainer's weights, whatever it loaded
        return engine

    def __init__(self, model_path: str, opts: VLLMOptions, *, dtype: str, eos_ids: Sequence[int],
                 serving: bool = False):
        """`serving`: the engine of a `reasoner serve` process (its own GPUs; no in-process colocation)."""
        self.opts = opts
        self.eos_ids = list(eos_ids)
        self._broken: str | None = None
        self._asleep = False
        self.llm = _build_llm(model_path, opts, dtype, colocated=not serving)
        self.transport = _pick_transport(opts, self.llm)
        self.dtype = self.served_dtype()

    # ------------------------------------------------------------------------------------------ generation
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Completion]]:
        from vllm import SamplingParams as VSamplingParams
        from vllm.inputs import TokensPrompt

        self._check_logprob_contract(params)
        self._wake_for_generation()
        stop_ids = list(dict.fromkeys(list(params.stop_token_ids) + ([] if params.ignore_eos else self.eos_ids)))
        greedy = params.temperature == 0
        sampling = VSamplingParams(
            n=params.n, temperature=params.temperature, top_p=1.0 if greedy else params.top_p,
            top_k=0 if greedy else params.top_k, max_tokens=params.max_new_tokens, stop_token_ids=stop_ids,
            ignore_eos=params.ignore_eos,
            logprobs=0, detokenize=False,  # the stop ids (EOS included) are given explicitly: no tokenizer
        )
        requests = [TokensPrompt(prompt_token_ids=list(p)) for p in prompts]
        outputs = self._call("generate", self.llm.generate, requests, sampling, use_tqdm=False)
        return [[_completion(c, stop_ids) for c in out.outputs] for out in outputs]

    def _check_logprob_contract(self, params: SamplingParams) -> None:
        truncated = params.top_p < 1.0 or params.top_k > 0
        if params.temperature == 0:
            return
        if self.opts.logprobs_mode == "processed_logprobs" and truncated:
            raise ValueError("vLLM's processed_logprobs are taken after top-p/top-k truncation, but the engine "
                             "contract is log-probs before it: use top_p=1 and top_k=0, or set "
                             "engine.vllm.logprobs_mode=raw_logprobs with temperature 1.0")
        if self.opts.logprobs_mode == "raw_logprobs" and params.temperature != 1.0:
            raise ValueError("vLLM's raw_logprobs ignore the temperature: with sampling.temperature != 1 use "
                             "engine.vllm.logprobs_mode=processed_logprobs (and top_p=1, top_k=0)")

    # ------------------------------------------------------------------------------------------ weights
    def sync_weights(self, model) -> None:
        self.load_weights(model.named_parameters())
        self.reset_prefix_cache()

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]], *, repack_tied_head: bool = True) -> int:
        """Send a full set of HF-named weights to the workers; the caller resets the prefix cache after it."""
        weights = [(name, t.detach()) for name, t in weights]
        return self.load_encoded(_encode(weights, self.transport), self.transport, repack_tied_head=repack_tied_head)

    def load_encoded(self, payload: Any, transport: str, *, repack_tied_head: bool = True) -> int:
        """Load weights already encoded for `transport` (the server receives them this way)."""
        if self.opts.sleep_level:
            self._call("wake_up", self.llm.wake_up, tags=["weights"])
        counts = self._call("load_weights", self.llm.collective_rpc, "reasoner_load_weights",
                            timeout=self.opts.timeout_s, args=(payload, transport, repack_tied_head))
        if self.opts.sleep_level:
            self._call("wake_up", self.llm.wake_up, tags=["kv_cache"])
            self._asleep = False
        return int(counts[0]) if counts else 0

    def reset_prefix_cache(self) -> None:
        ok = self._call("reset_prefix_cache", self.llm.reset_prefix_cache)
        if ok is False:
            raise EngineError("vLLM refused to reset its prefix cache (requests still running?): cached keys and "
                              "values from the old weights would be served")

    def served_dtype(self) -> str:
        """The dtype vLLM computes in ("auto" resolves to half precision for float32 checkpoints on some
        platforms, so the probe's thresholds follow what the engine reports, not what was asked)."""
        dtype = self.llm.llm_engine.model_config.dtype
        return str(dtype).removeprefix("torch.")

    # ------------------------------------------------------------------------------------------ memory
    def release_memory(self) -> None:
        """Give GPU memory back to training until the next sync (sleep mode); a no-op when it is off."""
        if self.opts.sleep_level and not self._asleep:
            self._call("sleep", self.llm.sleep, level=self.opts.sleep_level)
            self._asleep = True

    def _wake_for_generation(self) -> None:
        if not self._asleep:
            return
        if self.opts.sleep_level == 2:
            raise EngineError("the engine slept at level 2 (weights discarded) and no weights were synced since: "
                              "call sync_weights before generating")
        self._call("wake_up", self.llm.wake_up)
        self._asleep = False

    def close(self) -> None:
        llm, self.llm = getattr(self, "llm", None), None
        if llm is None:
            return
        core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        if core is not None and hasattr(core, "shutdown"):
            try:
                core.shutdown()
            except Exception:  # shutting down a broken engine must not hide the error that broke it
                pass
        del llm

    # ------------------------------------------------------------------------------------------ timeouts
    def _call(self, what: str, fn, *args, **kwargs):
        """Run `fn` with the engine timeout; a call that does not return in time is an error, not a hang."""
        if self.llm is None:
            raise EngineError(f"vLLM {what}: the engine is closed")
        if self._broken:
            raise EngineError(f"vLLM {what}: the engine is unusable after an earlier failure ({self._broken})")
        return call_with_timeout(f"vLLM {what}", fn, self.opts.timeout_s, *args, on_timeout=self._mark_broken,
                                 **kwargs)

    def _mark_broken(self, reason: str) -> None:
        self._broken = reason


def call_with_timeout(what: str, fn, timeout_s: float, *args, on_timeout=None, **kwargs):
    """`fn(*args, **kwargs)` in a daemon thread; `EngineError` if it raises or takes longer than `timeout_s`.

    A daemon thread, so that a call stuck for good cannot keep the process alive at exit either."""
    box: dict[str, Any] = {}
    done = threading.Event()

    def run():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as e:  # noqa: BLE001 - re-raised in the caller's thread
            box["error"] = e
        finally:
            done.set()

    threading.Thread(target=run, name=what, daemon=True).start()
    if not done.wait(timeout_s):
        reason = f"{what} did not return within {timeout_s:g} s"
        if on_timeout is not None:
            on_timeout(reason)
        raise EngineError(f"{reason}; the engine may be hung (raise the timeout if the work is just slow)")
    if "error" in box:
        raise EngineError(f"{what} failed: {type(box['error']).__name__}: {box['error']}") from box["error"]
    return box.get("value")


# ---------------------------------------------------------------------------------------------- helpers


def _completion(output, stop_ids: Sequence[int]) -> Completion:
    ids = list(output.token_ids)
    if output.logprobs is None or len(output.logprobs) != len(ids):
        raise EngineError(f"vLLM returned {0 if output.logprobs is None else len(output.logprobs)} log-probs for "
                          f"{len(ids)} tokens")
    logprobs = [float(step[tok].logprob) for step, tok in zip(output.logprobs, ids)]
    stopped = output.finish_reason == "stop" or (ids and ids[-1] in stop_ids)
    return Completion(ids, logprobs, "stop" if stopped else "length")


def _build_llm(model_path: str, opts: VLLMOptions, dtype: str, *, colocated: bool):
    on_gpu = torch.cuda.is_available()
    if opts.sleep_level and not on_gpu:
        raise ValueError("engine.vllm.sleep_level: vLLM's CPU backend has no sleep mode (use 0)")
    if not on_gpu:
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", f"{opts.cpu_kv_cache_gb:g}")
    if opts.in_process:
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
    from vllm import LLM

    # Ranks sample different completions; the ranks of one tensor-parallel group need the same seed.
    rank = int(os.environ.get("RANK", "0")) // opts.tensor_parallel_size
    kwargs: dict[str, Any] = dict(
        model=model_path, dtype=dtype, seed=opts.seed + rank, enable_prefix_caching=opts.enable_prefix_caching,
        enforce_eager=opts.enforce_eager, tensor_parallel_size=opts.tensor_parallel_size,
        worker_extension_cls=WORKER_EXTENSION, logprobs_mode=opts.logprobs_mode,
        # Never take sampling defaults from the checkpoint's generation_config.json (Qwen2.5-Instruct ships
        # top_p=0.8, top_k=20, repetition_penalty=1.05): RL samples from exactly what the trainer scores.
        generation_config="vllm",
    )
    if opts.max_model_len:
        kwargs["max_model_len"] = opts.max_model_len
    if on_gpu:
        kwargs.update(gpu_memory_utilization=opts.gpu_memory_utilization, enable_sleep_mode=opts.sleep_level > 0)
        if colocated and not opts.llm_kwargs.get("distributed_executor_backend"):
            # In-process workers, one engine per training rank (TRL's colocation): weights pass as tensors.
            kwargs["distributed_executor_backend"] = "external_launcher"
            _launcher_env_defaults()
    kwargs.update(opts.llm_kwargs)
    return LLM(**kwargs)


def _pick_transport(opts: VLLMOptions, llm) -> str:
    if opts.weight_transport != "auto":
        return opts.weight_transport
    in_process = opts.in_process or getattr(llm.llm_engine.vllm_config.parallel_config,
                                            "distributed_executor_backend", None) == "external_launcher"
    if in_process:
        return "tensors"
    return "ipc" if torch.cuda.is_available() else "bytes"


def _encode(weights: list[tuple[str, torch.Tensor]], transport: str) -> Any:
    if transport == "tensors":
        return weights
    if transport == "bytes":
        from safetensors.torch import save
        return save({name: t.contiguous().cpu() for name, t in weights})
    if transport == "ipc":
        from torch.multiprocessing.reductions import reduce_tensor
        return [(name, reduce_tensor(t.contiguous())) for name, t in weights]
    raise ValueError(f"weight transport '{transport}' cannot be used by a colocated engine")


def _model_source(model) -> str:
    """Where vLLM loads the architecture (and initial weights) from: the model's own folder or hub id."""
    source = getattr(model, "name_or_path", "") or getattr(model.config, "_name_or_path", "")
    if not source:
        raise ValueError("the model has no name_or_path: save it with save_pretrained and load it from there")
    if Path(source).exists() and not (Path(source) / "config.json").is_file():
        raise ValueError(f"{source}: no config.json; vLLM loads the architecture from the model folder")
    return source


def _dtype_name(model, opts: VLLMOptions) -> str:
    if opts.dtype != "auto":
        return opts.dtype
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def served_eos_ids(model_path: str) -> list[int]:
    """EOS ids of a model folder or hub id (the serving process has no trainer model to ask)."""
    from transformers import AutoTokenizer, GenerationConfig

    ids: list[int] = []
    try:
        eos = GenerationConfig.from_pretrained(model_path).eos_token_id
        ids.extend([eos] if isinstance(eos, int) else list(eos or []))
    except OSError:  # no generation_config.json
        pass
    tok = AutoTokenizer.from_pretrained(model_path).eos_token_id
    return list(dict.fromkeys(int(i) for i in ids + ([tok] if tok is not None else [])))


def _launcher_env_defaults() -> None:
    """`external_launcher` reads the torchrun variables; give a single process the ones it would have."""
    defaults = {"RANK": "0", "LOCAL_RANK": "0", "WORLD_SIZE": "1", "MASTER_ADDR": "127.0.0.1"}
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
