"""The analyst with a trained low-rank adapter (engine/adapters): three-way labels from one pass per message.

Like the base analyst (engine/local/analyst.py) it classifies each message in an isolated prompt over a cached
prefix and reads next-token logits after the answer's opening, never generating text. What differs: the prompt is
the adapter's own short one, laid out as training lays it out (engine/adapters/layout.py); every projection the
adapter names adds its low-rank update, in the prefix's keys and values as in the messages' pass
(engine/kernels/low_rank.py); and the verdict is a softmax over the adapter's label words (positive, neutral,
negative) after adding the adapter's own label offsets (fitted on its dev split when it was trained), with no
zero-shot calibration and no neutral margin. The care question, when asked, still goes to the base model
through the base analyst.

The adapted layers are a second view of the same modules: the model holds its weights once, and replies never pass
through an update.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from transformers import PreTrainedTokenizerBase

from engine.adapters.file import AdapterError, AnalystAdapter, check_base, load_adapter
from engine.adapters.layout import AdaptedPromptLayout, adapted_prompt_layout
from engine.errors import ModelLoadError
from engine.kernels.paths import FastPaths
from engine.loading.fingerprint import fingerprint
from engine.loading.model import LoadedModel, resolve_source
from engine.local.analyst import Analyst, AnswerHead
from engine.local.prompt_rows import BATCH_TOKENS, length_groups, padded_rows
from engine.roles.care_phrases import with_phrase_floor
from engine.roles.prompts import ADAPTED_ANALYST_PROMPT_VERSION
from engine.roles.verdict import care_from_logprobs, sentiment_from_label_logits
from engine.settings import EngineSettings
from engine.values import LABELS, Sentiment

logger = logging.getLogger(__name__)


class AdaptedAnalyst:
    """Classifies messages in isolation through a trained adapter; runs only on the inference worker thread."""

    def __init__(
        self, paths: FastPaths, tokenizer: PreTrainedTokenizerBase, adapter: AnalystAdapter,
        *, care: Analyst | None = None,
    ) -> None:
        """``care``: the base analyst (asking the care question) that gives each message its care probability;
        None: explicit crisis phrases only."""
        self.tokenizer, self.care = tokenizer, care
        self.labels = adapter.labels
        self.layout = self._layout(adapter)  # the prompt exactly as training built it
        self.label_ids = [self.layout.label_ids[label] for label in self.labels]
        self.offsets = adapter.offsets()  # added to the label logits before the verdict
        self.tail_ids = self.layout.tail_ids
        try:
            prompt_pass = paths.adapted_prompt_pass(self.layout.prefix_ids, adapter.pairs, adapter.scaling)
        except ValueError as exc:
            raise AdapterError(f"the analyst adapter does not fit this model: {exc}") from None
        if prompt_pass is None:
            raise AdapterError(
                f"analyst adapters need a qwen2- or llama-shaped model, not {paths.model.config.model_type!r}"
            )
        self.prompt_pass = prompt_pass
        self.prefix = prompt_pass.prefix
        self.head = AnswerHead(paths, self.label_ids)
        self.columns = [self.head.column[token_id] for token_id in self.label_ids]  # head order -> label order

    def _layout(self, adapter: AnalystAdapter) -> AdaptedPromptLayout:
        """The prompt's token ids, after checking the adapter's labels are moodbot's and their words' first tokens
        are distinct (else the readout could not tell them apart)."""
        unknown = [label for label in adapter.labels if label not in LABELS]
        if unknown or not {"positive", "negative"} <= set(adapter.labels):
            raise AdapterError(
                f"the analyst adapter's labels {', '.join(adapter.labels)} are not moodbot's "
                f"({', '.join(LABELS)}; positive and negative at least)"
            )
        words = {label: adapter.label_words[label] for label in adapter.labels}
        try:
            return adapted_prompt_layout(self.tokenizer, words)
        except (ValueError, IndexError):
            shown = ", ".join(repr(word) for word in words.values())
            raise AdapterError(
                f"the analyst adapter's label words {shown} have no distinct first tokens here"
            ) from None

    def message_ids(self, text: str) -> list[int]:
        """The message's own tokens as plain text, cut to its beginning."""
        return self.layout.message_ids(self.tokenizer, text)

    def prompt_ids(self, text: str) -> list[int]:
        """Token ids of the whole isolated prompt for one message, ending where the label word comes."""
        return self.prefix.prefix_ids + self.message_ids(text) + self.tail_ids

    def classify_batch(self, texts: Sequence[str]) -> list[Sentiment]:
        """Classify several messages, each seeing only its own message, in passes grouped by length."""
        lengths = [len(self.message_ids(text)) for text in texts]
        logits: dict[int, list[float]] = {}
        for group in length_groups(lengths, len(self.tail_ids), BATCH_TOKENS):
            for index, row in zip(group, self.label_logits([texts[i] for i in group]).tolist(), strict=True):
                logits[index] = [logit + offset for logit, offset in zip(row, self.offsets, strict=True)]
        if self.care is not None:
            cares = [care_from_logprobs(yes, no) for _, _, yes, no in self.care.answers(texts)]
        else:
            cares = [0.0] * len(texts)
        return [
            sentiment_from_label_logits(self.labels, logits[i], care=with_phrase_floor(text, cares[i]))
            for i, text in enumerate(texts)
        ]

    @torch.inference_mode()
    def label_logits(self, texts: Sequence[str]) -> torch.Tensor:
        """Logits (batch, labels) of the label words' first tokens, in ``labels`` order, for one padded batch."""
        if not texts:
            return torch.zeros(0, len(self.labels))
        rows = [self.message_ids(text) for text in texts]
        batch = padded_rows(rows, len(self.prefix), self.tail_ids, [], self.tokenizer.pad_token_id or 0)
        hidden = self.prompt_pass.hidden_at(batch.input_ids, batch.positions, batch.mask, batch.answer_columns[:1])
        return self.head(hidden[:, 0])[:, self.columns]


def adapted_analyst(loaded: LoadedModel, adapter: AnalystAdapter, *, care_question: bool) -> AdaptedAnalyst:
    """The adapted analyst for a loaded model, after refusing (AdapterError) an adapter made for another model or
    prompt. With ``care_question`` the base analyst asks it, as without an adapter."""
    check_base(adapter, model_name=loaded.name, model_fingerprint=loaded.fingerprint,
               prompt_version=ADAPTED_ANALYST_PROMPT_VERSION)
    care = Analyst(loaded.paths, loaded.tokenizer, calibrate=False, care_question=True) if care_question else None
    analyst = AdaptedAnalyst(loaded.paths, loaded.tokenizer, adapter, care=care)
    logger.info(
        "analyst adapter: labels %s, rank %d on %d layers, %.0f KB, label offsets %s",
        "/".join(adapter.labels), adapter.rank, len(adapter.layers), adapter.size_bytes() / 1024,
        adapter.offsets_text(),
    )
    return analyst


def describe_adapter(settings: EngineSettings) -> str:
    """One line on the configured analyst adapter, checked against the configured model's weights without loading
    them (AdapterError, or ModelLoadError when the model cannot be found)."""
    adapter = load_adapter(settings.analyst_adapter)
    source = resolve_source(settings.model)
    try:
        weights = fingerprint(source.weights)
    except OSError as exc:
        raise ModelLoadError(f"cannot read the model's weights at {source.weights}: {exc}") from exc
    check_base(adapter, model_name=settings.model, model_fingerprint=weights,
               prompt_version=ADAPTED_ANALYST_PROMPT_VERSION)
    return (
        f"{settings.analyst_adapter}: trained on {adapter.base_model} (these weights), labels "
        f"{'/'.join(adapter.labels)}, rank {adapter.rank} on {len(adapter.layers)} layers, "
        f"{adapter.size_bytes() / 1024:.0f} KB, label offsets {adapter.offsets_text()}"
    )
