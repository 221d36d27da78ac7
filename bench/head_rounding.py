"""How far the output head's int8 activations move the next-token distribution, on real hidden states.

    python -m bench.head_rounding                  # the Qwen2.5 0.5B stand-in, the benchmarks' 463-token prompt

The prompt goes once through the int8 model; its final hidden states (one per token, after the final norm) are then
multiplied by the same int8 head weights in each way moodbot can: weight-only in float32 (the reference here),
weight-only in bf16 (torch's kernel), eight-bit symmetric activations per row (what many chats decoding together use,
torch._int_mm with VNNI, the AVX2 kernel's vpsignb product without), and seven-bit asymmetric activations per row
(what the layers use on AVX2). For each: the mean and 95th percentile of KL(reference || other) over the tokens, and
how often the most likely next token is the same. This isolates the head's own rounding from the layers'.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import torch

from bench.baselines import DEFAULT_MODEL, build_history, reply_prompt_text
from bench.measure import cpu_description


def distance(reference: torch.Tensor, other: torch.Tensor) -> dict[str, float]:
    """Mean and p95 KL(reference || other) over rows of logits, and the share of rows with the same top token."""
    reference_log, other_log = torch.log_softmax(reference, -1), torch.log_softmax(other, -1)
    kl = (reference_log.exp() * (reference_log - other_log)).sum(-1)
    same = (reference.argmax(-1) == other.argmax(-1)).float().mean()
    return {"kl_mean": round(float(kl.mean()), 5), "kl_p95": round(float(kl.quantile(0.95)), 5),
            "top1_agreement": round(float(same), 4)}


def measure(model: Path, threads: int) -> dict[str, Any]:
    """Load ``model`` in int8 and compare the head's arithmetics (see the module docstring)."""
    from engine.kernels import activations, int8
    from engine.loading.model import load_model
    from engine.settings import EngineSettings

    loaded = load_model(EngineSettings(model=str(model), precision="int8", threads=threads))
    ids = loaded.tokenizer.encode(reply_prompt_text(build_history(10)), add_special_tokens=False)
    head = loaded.model.get_output_embeddings()
    assert isinstance(head, int8.Int8Linear), "the int8 model's head is an Int8Linear"
    weight, scales = head.weight_int8, head.scales
    with torch.inference_mode():
        hidden = loaded.model.model(input_ids=torch.tensor([ids])).last_hidden_state[0].float()
        dequantized = torch.cat([
            weight[start:start + 8192].float() * scales[start:start + 8192].float()[:, None]
            for start in range(0, weight.shape[0], 8192)
        ])
        reference = hidden @ dequantized.T
        bf16 = torch.ops.aten._weight_int8pack_mm(hidden.to(int8.COMPUTE_DTYPE), weight, scales).float()
        symmetric = int8.with_int8_activations(head)(hidden).float()  # as a batch of many chats computes it
        seven_bit = activations.quantize_rows_of_activations(hidden)
        # Seven-bit asymmetric rows, multiplied exactly against the dequantised weights.
        asymmetric = seven_bit.dequantized() @ dequantized.T
    return {
        "machine": cpu_description(), "tokens": len(ids),
        "weight-only bf16 (torch)": distance(reference, bf16),
        "eight-bit symmetric activations (many chats)": distance(reference, symmetric),
        "seven-bit asymmetric activations (the layers' on AVX2)": distance(reference, asymmetric),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(json.dumps(measure(args.model, args.threads), indent=1))


if __name__ == "__main__":
    main()
