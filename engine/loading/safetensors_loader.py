"""Load a model folder's safetensors checkpoint straight into int8, one weight at a time.

transformers' ``from_pretrained`` builds the whole model in bf16 first, reading through a memory map of the
checkpoint; quantising afterwards then held the bf16 model, its int8 copy and the mapped file at once (Qwen2.5
from a hub folder: 2.2 GB peak). Here the model skeleton is created without memory, and each weight is read on its
own (the file opened and closed around it), converted to bf16 and turned into int8 before the next one; what is
kept as it is (norms, biases) is copied, as a tensor read straight from the file would keep all of it mapped.

Only for checkpoints whose tensor names are the model's own parameter names (Qwen2, Qwen1.5, Llama and most
decoder-only models); for others transformers renames or merges tensors while loading, so :func:`load_safetensors_int8`
returns None and the caller loads the usual way.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from transformers import AutoConfig, AutoModelForCausalLM, GenerationConfig, PreTrainedModel

from engine.kernels.int8 import COMPUTE_DTYPE
from engine.loading.memory import release_freed_memory
from engine.loading.streaming import quantize_in_place, set_parameter

logger = logging.getLogger(__name__)


def checkpoint_locations(directory: Path) -> dict[str, Path]:
    """Every tensor name in the folder's ``*.safetensors`` files, with the file holding it."""
    from safetensors import safe_open

    locations: dict[str, Path] = {}
    for file in sorted(directory.glob("*.safetensors")):
        with safe_open(str(file), "pt") as checkpoint:
            locations.update(dict.fromkeys(checkpoint.keys(), file))
    return locations


def load_safetensors_int8(directory: Path) -> PreTrainedModel | None:
    """The folder's model with int8 linear layers and embedding, read tensor by tensor; None when its checkpoint's
    names are not the model's parameter names (or it has no safetensors files)."""
    from accelerate import init_empty_weights
    from safetensors import safe_open

    locations = checkpoint_locations(directory)
    if not locations:
        return None
    config = AutoConfig.from_pretrained(directory)
    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(config, dtype=COMPUTE_DTYPE)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    names = [name for name, _ in model.named_parameters()]
    if tied:  # the head is the embedding's int8 matrix (quantize_in_place); checkpoints often leave it out
        head = model.get_output_embeddings()
        head_names = {f"{name}.weight" for name, module in model.named_modules() if module is head}
        names = [name for name in names if name not in head_names]
    unknown = [name for name in names if name not in locations]
    if unknown:
        logger.info("%s: checkpoint names differ from the model's (%s): loading with from_pretrained",
                    directory, unknown[0])
        return None
    for name in names:
        with safe_open(str(locations[name]), "pt") as checkpoint:
            value = checkpoint.get_tensor(name).to(COMPUTE_DTYPE)  # may read straight from the mapped file
        set_parameter(model, name, value)
        if not quantize_in_place(model, name, tied):
            set_parameter(model, name, value.clone())  # kept as it is: its own memory, or the file stays mapped
        del value
        release_freed_memory()
    with contextlib.suppress(OSError):  # no generation_config.json: the defaults from the model config stay
        model.generation_config = GenerationConfig.from_pretrained(directory)
    model.eval()
    logger.info("loaded %s tensor by tensor into int8 (tied embeddings: %s)", directory, tied)
    return model
