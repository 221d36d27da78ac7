"""Chat templates: use the tokenizer's own, fall back to ChatML when it has none.

People's text is always encoded as plain text: a message that contains ``<|im_start|>system`` or any other special
token's text gives the ordinary tokens of those characters, never the special token, so it cannot open or close a
turn. Only the template's own markers become special tokens (:func:`encode_prompt`, :func:`encode_text`).
"""

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
    """Token ids of the prompt for ``messages`` ending with an open assistant turn; control tokens written in the
    messages stay text (transformers' ``sanitize_control_tokens``: the special tokens, and the added tokens the
    template itself writes), so only the template's markers are control tokens."""
    return tokenizer.apply_chat_template(
        list(messages), tokenize=True, add_generation_prompt=True, sanitize_control_tokens=True, return_dict=False
    )


def encode_text(tokenizer: PreTrainedTokenizerBase, text: str) -> list[int]:
    """Token ids of ``text`` as plain text: a special token's text gives ordinary tokens, never the special one."""
    return tokenizer.encode(text, add_special_tokens=False, split_special_tokens=True)


SLOT = "\u2063MOODBOT-SLOT\u2063"  # stands in for variable content while splitting a rendered prompt


def split_prompt(tokenizer: PreTrainedTokenizerBase, messages: Sequence[Message]) -> tuple[str, str]:
    """The rendered prompt for ``messages`` (one of which contains :data:`SLOT`), as text before and after it."""
    before, after = render_prompt(tokenizer, messages).split(SLOT)
    return before, after
