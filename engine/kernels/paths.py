"""A loaded model's fast paths, chosen once at load time: the object the analyst and the companion call.

Which computation runs where is decided here and nowhere else:

- a prompt (reply prefill): transformers' forward, weight-only int8 where the model is int8;
- one new token per chat (decoding): packed int8 layers take engine.kernels.decode's PackedDecodeStep (one chat or
  many), other precisions its DecodeStep; models of other shapes transformers' forward;
- many new tokens over a fixed prefix (classification): engine.kernels.prompt_pass's StackPromptPass on packed
  int8 layers, else its ForwardPromptPass; both quantise activations per row where the model is int8 (the copy of
  the model that engine.kernels.int8.with_int8_activations makes once);
- the same with a trained low-rank adapter (an adapted analyst): StackPromptPass over an adapted copy of the stack
  (engine/kernels/low_rank.py), packed int8 where the layers are, else the model's own modules on a float32
  residual stream, int8 ones quantising their activations per row as above.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

import torch
from torch import nn
from transformers import DynamicCache, PreTrainedModel

from engine.kernels.arithmetic import PACKED_ROWS, FloatStreamArithmetic
from engine.kernels.decode import DecodeStep, PackedDecodeStep
from engine.kernels.int8 import Int8Linear, pack_linears, with_int8_activations
from engine.kernels.layer import Stack, model_stack, packed_stack
from engine.kernels.low_rank import FUSED_PROJECTIONS, LowRankArithmetic, LowRankPair, adapted_stack
from engine.kernels.prefix import PrefixCache
from engine.kernels.prompt_pass import ForwardPromptPass, StackPromptPass

logger = logging.getLogger(__name__)

PromptPass = ForwardPromptPass | StackPromptPass


class FastPaths:
    """How one loaded model computes prompts, decode steps and prompt passes (see the module docstring)."""

    def __init__(self, model: PreTrainedModel, *, general: Stack | None = None, packed: Stack | None = None) -> None:
        """``general``: the model's layers as its own modules (no decode step for other shapes when None);
        ``packed``: the same layers packed int8 with folded norms, when every projection is packed."""
        self.model = model
        self.general = general
        self.int8_activation_model = with_int8_activations(model)  # what prompt passes run through transformers
        self.decode_step = DecodeStep(general) if general is not None else None
        self.packed = packed
        # Both steps end in the same head module: one OutputHead, so its int8 twin and scales exist once.
        shared_head = None
        if self.decode_step is not None and packed is not None and packed.head is self.decode_step.stack.head:
            shared_head = self.decode_step.head
        self.packed_step = PackedDecodeStep(packed, shared_head) if packed is not None else None

    @torch.inference_mode()
    def prefill(self, input_ids: torch.Tensor, position_ids: torch.Tensor, cache: DynamicCache) -> torch.Tensor:
        """Feed a prompt's tokens (1, new) at ``position_ids`` (1, new) after ``cache``, appending to it; returns the
        last position's logits (1, vocab) in float32."""
        out = self.model(
            input_ids=input_ids, position_ids=position_ids, cache=cache, use_cache=True, logits_to_keep=1,
        )
        return out.logits[:, -1, :].float()

    @torch.inference_mode()
    def decode(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        cache: DynamicCache,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Feed one token per sequence: input_ids and position_ids (batch, 1); ``attention_mask`` (batch, cached + 1)
        with 0 at padding, or None when no row is padded. Appends to ``cache``; returns logits (batch, vocab) in
        float32."""
        if self.packed_step is not None:
            return self.packed_step(input_ids, position_ids, cache, attention_mask)
        if self.decode_step is not None:
            return self.decode_step(input_ids, position_ids, cache, attention_mask)
        return self.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, cache=cache,
            use_cache=True, logits_to_keep=1,
        ).logits[:, -1, :].float()  # (batch, vocab)

    def prefix(self, prefix_ids: list[int]) -> PrefixCache:
        """The keys and values of a fixed prompt beginning that decoding continues (computed as prompts are)."""
        return PrefixCache.prefilled(self.model, prefix_ids)

    def prompt_pass(self, prefix_ids: list[int]) -> PromptPass:
        """A pass for batches of new tokens over the fixed prompt beginning ``prefix_ids``, computed once here."""
        prefix = PrefixCache.prefilled(self.int8_activation_model, prefix_ids)
        if self.packed is not None:
            return StackPromptPass(self.packed, prefix)
        return ForwardPromptPass(self.int8_activation_model, prefix)

    def adapted_prompt_pass(
        self, prefix_ids: list[int], pairs: Mapping[tuple[int, str], LowRankPair], scaling: float
    ) -> StackPromptPass | None:
        """A prompt pass over ``prefix_ids`` with low-rank updates on the projections ``pairs`` names ((layer,
        projection) -> matrices; engine/kernels/low_rank.py), the prefix computed through them too; None for a
        model of another shape (no stack). ValueError names a pair that does not fit the model."""
        if self.packed is not None:
            stack, arithmetic = self.packed, LowRankArithmetic(PACKED_ROWS)
        elif self.general is not None:
            # As classification computes them: int8 layers quantise their activations per row (a copy sharing the
            # weights), float layers are the model's own.
            stack = Stack(self.general.inner, self.general.head, [
                replace(layer, **{name: with_int8_activations(getattr(layer, name)) for name in FUSED_PROJECTIONS})
                for layer in self.general.layers
            ], self.general.shape)
            arithmetic = LowRankArithmetic(FloatStreamArithmetic(self.model.dtype))
        else:
            return None
        return StackPromptPass.over_own_prefix(adapted_stack(stack, pairs, scaling), prefix_ids, arithmetic)

    @torch.inference_mode()
    def prompt_logits(self, input_ids: list[int]) -> torch.Tensor:
        """Last-position logits (vocab,) of a whole prompt, no prefix, in a prompt pass's arithmetic (a reference)."""
        logits = self.int8_activation_model(input_ids=torch.tensor([input_ids]), logits_to_keep=1).logits
        return logits[0, -1]

    @torch.inference_mode()
    def head_rows(self, token_ids: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The output head's rows for ``token_ids`` (len, hidden) and their bias (len,) or None, as float32 copies
        (nothing here holds on to the full head)."""
        head: nn.Module = self.model.get_output_embeddings()
        ids = torch.tensor(list(token_ids))
        if isinstance(head, Int8Linear):
            rows = head.weight_int8[ids].float() * head.scales[ids].float()[:, None]
        else:
            rows = head.weight[ids].float()
        bias = getattr(head, "bias", None)
        return rows, None if bias is None else bias[ids].float()


def build_fast_paths(model: PreTrainedModel, *, pack_int8: bool = False) -> FastPaths:
    """Choose ``model``'s fast paths once: fuse its q/k/v and gate/up projections, with ``pack_int8`` move its int8
    layers into oneDNN's packed layout where torch has it, and build the steps its shape and layers allow."""
    general = model_stack(model)  # fuses (and, in int8 with oneDNN, packs) the q/k/v and gate/up projections
    if pack_int8 and not pack_linears(model):
        logger.info("torch has no oneDNN int8 matmul here: int8 stays weight-only")
    packed = packed_stack(general) if general is not None else None
    return FastPaths(model, general=general, packed=packed)
