"""The built-in engine: batched, left-padded sampling on the trainer's own model (transformers).

Because it samples from the very module being trained, weight sync is a no-op. The `n` samples of a prompt share
its prefill: each distinct prompt is encoded once (all but its last token) through the model's `forward`. Then:
- Llama-family models decode with the lean loop of `fast_decode` (see there: same distribution as `generate`,
  far less per-token overhead);
- any other model continues with `generate` from the prefill's cache repeated `n` times. Its sampling log-probs
  are recorded by a logits processor that sees the raw logits of each step (custom processors run before the
  temperature / top-p warpers) and keeps only the previous step's log-softmax — memory O(batch × vocab) rather
  than the O(batch × length × vocab) of `output_logits=True`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch

from reasoner.rollout import fast_decode
from reasoner.rollout.base import Completion, RolloutEngine, SamplingParams, eos_token_ids


class _LogprobRecorder:
    """Logits processor: records log softmax(logits / T) of the token sampled at each step."""

    def __init__(self, temperature: float):
        self.temperature = temperature if temperature > 0 else 1.0
        self.steps: list[torch.Tensor] = []  # [B] per finished step
        self._prev: torch.Tensor | None = None  # [B, V] log-probs of the step whose token is not yet known

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self._prev is not None:
            self.steps.append(self._prev.gather(1, input_ids[:, -1:]).squeeze(1))
        self._prev = torch.log_softmax(scores.float() / self.temperature, dim=-1)
        return scores

    def finish(self, last_tokens: torch.Tensor) -> torch.Tensor:
        """[B, L] log-probs once the final sampled tokens are known."""
        if self._prev is not None:
            self.steps.append(self._prev.gather(1, last_tokens[:, None]).squeeze(1))
            self._prev = None
        return torch.stack(self.steps, dim=1) if self.steps else torch.zeros(last_tokens.shape[0], 0)


def sampling_settings(params: SamplingParams) -> dict:
    """The `generate` settings that shape the sampling distribution, set explicitly.

    `generate` fills any setting left at None from the model's `generation_config` (a checkpoint's own
    `generation_config.json`: Qwen2.5-Instruct ships top_p=0.8, top_k=20, repetition_penalty=1.05) and then from
    library defaults (top_k=50). RL must sample from exactly the distribution the trainer scores — plain
    temperature-scaled logits with only the truncations asked for — so these are never left to be filled in,
    and `_generate_batch` shows `generate` a neutral model config for everything else.
    """
    greedy = params.temperature == 0
    return dict(
        do_sample=not greedy, temperature=1.0 if greedy else params.temperature,
        top_p=1.0 if greedy else params.top_p, top_k=0 if greedy else params.top_k, min_p=0.0, typical_p=1.0,
        epsilon_cutoff=0.0, eta_cutoff=0.0, repetition_penalty=1.0, no_repeat_ngram_size=0, min_length=0,
        renormalize_logits=False,  # min_new_tokens: unset (transformers warns when both it and min_length are)
    )


class HFEngine(RolloutEngine):
    """`fast_decode`: sample Llama-family models with the lean loop of `fast_decode` (same distribution, less
    per-token overhead, finished rows dropped from the batch once at most `compact_below` of it is unfinished;
    with `compact_below=0` the same random stream as `generate`); other models, or `fast_decode=False`, go
    through `generate`."""

    def __init__(self, model, tokenizer, *, max_batch_size: int = 256, fast_decode: bool = True,
                 compact_below: float = 0.5):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.fast_decode = fast_decode
        self.compact_below = compact_below
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    @property
    def decode_path(self) -> str:
        """"fast" or "generate": which loop the next call will use."""
        return "fast" if self.fast_decode and fast_decode.unsupported_reason(self.model) is None else "generate"

    def stop_ids(self, params: SamplingParams) -> list[int]:
        ids = list(params.stop_token_ids)
        if params.ignore_eos:
            return ids
        return ids + [tok for tok in eos_token_ids(self.model, self.tokenizer) if tok not in ids]

    @torch.no_grad()
    def generate(self, prompts: Sequence[Sequence[int]], params: SamplingParams) -> list[list[Completion]]:
        per_call = max(1, self.max_batch_size // params.n)  # whole groups per generate call
        flat: list[Completion] = []
        for start in range(0, len(prompts), per_call):
            flat.extend(self._generate_batch([list(p) for p in prompts[start:start + per_call]], params))
        return [flat[i * params.n:(i + 1) * params.n] for i in range(len(prompts))]

    def _generate_batch(self, prompts: list[list[int]], params: SamplingParams) -> list[Completion]:
        """`params.n` completions for each of `prompts`, groups contiguous."""
        device = next(self.model.parameters()).device
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(prompts), width), dtype=torch.long)
        for i, p in enumerate(prompts):
            input_ids[i, width - len(p):] = torch.tensor(p, dtype=torch.long)
            attention[i, width - len(p):] = 1
        input_ids, attention = input_ids.to(device), attention.to(device)
        stop_ids = self.stop_ids(params)
        was_training = self.model.training
        self.model.eval()
        try:
            sample = self._sample_fast if self.decode_path == "fast" else self._sample_generate
            new_tokens, logprobs = sample(input_ids, attention, params, stop_ids)
        finally:
            self.model.train(was_training)
        stop_set = set(stop_ids)
        completions = []
        for i in range(len(new_tokens)):
            ids = new_tokens[i].tolist()
            end = next((j for j, t in enumerate(ids) if t in stop_set), None)
            if end is None:
                completions.append(Completion(ids, logprobs[i].tolist(), "length"))
            else:
                completions.append(Completion(ids[:end + 1], logprobs[i, :end + 1].tolist(), "stop"))
        return completions

    def _sample_fast(self, input_ids: torch.Tensor, attention: torch.Tensor, params: SamplingParams,
                     stop_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self._prefill(input_ids, attention)
        tokens, logprobs = fast_decode.Decoder(self.model).sample(
            None if cache is None else fast_decode.prefix_kv(cache), params.n,
            input_ids[:, -1].repeat_interleave(params.n), attention.repeat_interleave(params.n, dim=0),
            max_new_tokens=params.max_new_tokens, stop_ids=stop_ids, pad_id=self.pad_id,
            temperature=params.temperature, top_k=params.top_k, top_p=params.top_p, compact_below=self.compact_below)
        return tokens.cpu(), logprobs.cpu()

    def _sample_generate(self, input_ids: torch.Tensor, attention: torch.Tensor, params: SamplingParams,
                         stop_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        from transformers import GenerationConfig, LogitsProcessorList

        gen_cfg = GenerationConfig(**sampling_settings(params), max_new_tokens=params.max_new_tokens,
                                   eos_token_id=stop_ids, pad_token_id=self.pad_id, bos_token_id=None,
                                   return_dict_in_generate=True, use_cache=True)
        recorder = _LogprobRecorder(params.temperature)
        # `generate` then only runs the last prompt token before sampling; the result is the same as prefilling
        # each of the n copies separately.
        cache = self._prefill(input_ids, attention) if params.n > 1 else None
        if cache is not None:
            cache.batch_repeat_interleave(params.n)
        own_defaults = self.model.generation_config
        self.model.generation_config = GenerationConfig()  # nothing of the checkpoint's defaults gets merged in
        try:
            out = self.model.generate(input_ids=input_ids.repeat_interleave(params.n, dim=0),
                                      attention_mask=attention.repeat_interleave(params.n, dim=0),
                                      past_key_values=cache, generation_config=gen_cfg,
                                      logits_processor=LogitsProcessorList([recorder]))
        finally:
            self.model.generation_config = own_defaults
        new_tokens = out.sequences[:, input_ids.shape[1]:]
        return new_tokens.cpu(), recorder.finish(new_tokens[:, -1]).cpu()

    def _prefill(self, input_ids: torch.Tensor, attention: torch.Tensor):
        """The KV cache of every prompt but its last token, one row per distinct prompt (None if the prompts are
        one token wide)."""
        if input_ids.shape[1] < 2:
            return None
        position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
        out = self.model(input_ids=input_ids[:, :-1], attention_mask=attention[:, :-1],
                         position_ids=position_ids[:, :-1], use_cache=True, logits_to_keep=1)
        return out.past_key_values
