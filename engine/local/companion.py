"""The companion role: an empathetic reply from the user's recent history, decoded one token at a time.

A :class:`ReplyStream` is a small state machine the worker advances with :meth:`ReplyStream.step`, so several
replies and classifications can share the one model thread fairly (nobody waits for a whole reply of another chat).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache, PreTrainedTokenizerBase

from engine.kernels.paths import FastPaths
from engine.local.prompt_cache import CacheEntry, KeyValues, PromptCache, snapshot
from engine.local.sampling import SamplingSettings
from engine.roles.chat_format import SLOT, encode_prompt, split_prompt
from engine.roles.guard import visible_reply
from engine.roles.history import trim_history, truncate_text
from engine.roles.prompts import COMPANION_SYSTEM_PROMPT, COMPANION_SYSTEM_PROMPTS
from engine.values import ChatTurn, ReplyLength


def reply_prompt_ids(
    tokenizer: PreTrainedTokenizerBase,
    history: Sequence[ChatTurn],
    message: str,
    history_tokens: int,
    length: ReplyLength = "normal",
) -> list[int]:
    """Token ids of the companion prompt: the system prompt for ``length``, trimmed history, the new message, an
    open reply (what the person and earlier replies wrote stays plain text: it cannot forge a turn)."""
    message = truncate_text(tokenizer, message, history_tokens)
    messages = [{"role": "system", "content": COMPANION_SYSTEM_PROMPTS[length]}]
    messages += [{"role": t.role, "content": t.text} for t in trim_history(tokenizer, history, history_tokens)]
    messages.append({"role": "user", "content": message})
    return encode_prompt(tokenizer, messages)


def pinned_system_prefix(paths: FastPaths, tokenizer: PreTrainedTokenizerBase) -> CacheEntry:
    """The companion prompt's fixed beginning (system prompt up to the first user turn), prefilled once."""
    messages = [{"role": "system", "content": COMPANION_SYSTEM_PROMPT}, {"role": "user", "content": SLOT}]
    prefix_text, _ = split_prompt(tokenizer, messages)
    prefix = paths.prefix(tokenizer.encode(prefix_text, add_special_tokens=False))
    return CacheEntry(tuple(prefix.prefix_ids), prefix.layers)


class ReplyStream:
    """One reply being generated: prefill on the first step, then one token per step until a stop or the limit."""

    def __init__(
        self,
        paths: FastPaths,
        tokenizer: PreTrainedTokenizerBase,
        prompt_ids: list[int],
        sampling: SamplingSettings,
        stop_ids: frozenset[int],
        generator: torch.Generator | None = None,
        prompt_cache: PromptCache | None = None,
    ) -> None:
        self.paths = paths
        self.tokenizer = tokenizer
        self.prompt_ids = prompt_ids
        self.sampling = sampling
        self.stop_ids = stop_ids
        self.generator = generator
        self.prompt_cache = prompt_cache
        self.reused_tokens = 0
        self.generated: list[int] = []
        self.cache: DynamicCache | None = None
        self.shown = ""
        self.done = False

    @torch.inference_mode()
    def step(self) -> str:
        """Advance alone by one token (the first call prefills); return newly visible text, maybe ''."""
        if self.done:
            return ""
        if self.cache is None:
            return self.prefill()
        return self.accept(self._forward(self.generated[-1:]))

    @torch.inference_mode()
    def prefill(self) -> str:
        """Compute the prompt (starting from the longest cached prefix) and pick the first token."""
        self.cache, self.reused_tokens = self._start_cache()
        return self.accept(self._forward(self.prompt_ids[self.reused_tokens:]))

    def accept(self, logits: torch.Tensor) -> str:
        """Pick the next token from ``logits`` (1, vocab; overwritten by the penalty), update the state, return newly
        visible text."""
        token = self.sampling.pick_batch(logits.reshape(1, -1).float(), [self.context], [self.generator])[0]
        return self.accept_token(token)

    def accept_token(self, token: int) -> str:
        """Take ``token`` as the next one (picked for this stream), update the state, return newly visible text."""
        if token in self.stop_ids:
            self.done = True
        else:
            self.generated.append(token)
            if len(self.generated) >= self.sampling.max_new_tokens:
                self.done = True
        if self.done and self.cache is not None:
            self.remember(snapshot(self.cache))
        return self._new_text()

    def remember(self, layers: KeyValues) -> None:
        """Offer this conversation's keys/values (prompt + reply so far) to the prompt cache for the next turn."""
        if self.prompt_cache is None:
            return
        computed = layers[0][0].shape[-2]  # the last sampled token was never fed back
        self.prompt_cache.store((self.prompt_ids + self.generated)[:computed], layers)

    @property
    def pending_token(self) -> int:
        """The token sampled last, to be fed in the next forward pass."""
        return self.generated[-1]

    def _start_cache(self) -> tuple[DynamicCache, int]:
        if self.prompt_cache is not None:
            cache, reused = self.prompt_cache.lookup(self.prompt_ids)
            if cache is not None:
                return cache, reused
        return DynamicCache(), 0

    def _forward(self, ids: list[int]) -> torch.Tensor:
        """Feed ``ids`` after the cache; the next-token logits (1, vocab) in float32."""
        assert self.cache is not None
        seen = self.cache.get_seq_length()
        input_ids = torch.tensor([ids])  # (1, new)
        position_ids = torch.arange(seen, seen + len(ids)).unsqueeze(0)  # (1, new)
        if len(ids) == 1:
            return self.paths.decode(input_ids, position_ids, self.cache)
        return self.paths.prefill(input_ids, position_ids, self.cache)

    @property
    def context(self) -> list[int]:
        """The ids so far (prompt and reply), which the repetition penalty looks at."""
        return self.prompt_ids + self.generated

    def _new_text(self) -> str:
        raw = self.tokenizer.decode(self.generated, skip_special_tokens=True)
        if raw.endswith("\ufffd") and not self.done:  # a multi-byte character is still incomplete
            return ""
        visible = visible_reply(raw, final=self.done)
        if not visible.startswith(self.shown):  # only trailing whitespace can differ at the end
            return ""
        delta, self.shown = visible[len(self.shown):], visible
        return delta
