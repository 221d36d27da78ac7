"""Chat templates: use the tokenizer's own, fall back to ChatML when it has none."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for annotations: the remote backend imports this module without transformers or torch
    from transformers import PreTrainedTokenizerBase

# ChatML, the format the Qwen family was trained on; used when a tokenizer ships no template.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

Message = dict[str, str]


def ensure_chat_template(tokenizer: PreTrainedTokenizerBase) -> bool:
    """Give ``tokenizer`` the ChatML template if it has none; return True when the fallback was applied."""
    if getattr(tokenizer, "chat_template", None):
        return False
    tokenizer.chat_template = CHATML_TEMPLATE
    return True


def render_prompt(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> str:
    """The prompt text for ``messages`` ending with an open assistant turn."""
    return tokenizer.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)


def encode_prompt(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> list[int]:
    """Token ids of the prompt for ``messages`` ending with an open assistant turn."""
    return tokenizer.encode(render_prompt(tokenizer, messages), add_special_tokens=False)


SLOT = "\u2063MOODBOT-SLOT\u2063"  # stands in for variable content while splitting a rendered prompt


def split_prompt(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> tuple[str, str]:
    """The rendered prompt for ``messages`` (one of which contains :data:`SLOT`), as text before and after it."""
    before, after = render_prompt(tokenizer, messages).split(SLOT)
    return before, after
