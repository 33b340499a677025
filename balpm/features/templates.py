"""Text templates per data source: how a prompt, or a prompt and an answer, become one text.

A rendered text keeps its three pieces apart (:class:`Text`: ``head`` + ``prompt`` + ``tail``) so that
the tokenizer step can shorten the prompt, and only the prompt, when the text is over the token limit.
The TL;DR format is the reference's ``"Post: {post}\\nSummary: {summary}"`` (docs/method.md).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

TEMPLATE_FORMAT_VERSION = 1


@dataclass(frozen=True)
class Text:
    """One text to embed: ``head + prompt + tail``; only ``prompt`` may be truncated."""

    head: str
    prompt: str
    tail: str

    @property
    def full(self) -> str:
        """The whole text as the model sees it when nothing is truncated."""
        return self.head + self.prompt + self.tail


@dataclass(frozen=True)
class Template:
    """A per-source text format: ``{prompt_prefix}{prompt}`` and ``{prompt_prefix}{prompt}{answer_prefix}{answer}``."""

    name: str
    prompt_prefix: str
    answer_prefix: str

    def prompt_text(self, prompt: str) -> Text:
        """The prompt-only text (features for the entropy term)."""
        return Text(self.prompt_prefix, prompt, "")

    def pair_text(self, prompt: str, answer: str) -> Text:
        """The prompt+answer text (features for the preference model)."""
        return Text(self.prompt_prefix, prompt, self.answer_prefix + answer)

    def describe(self) -> dict[str, str]:
        """Both formats as strings with ``{prompt}``/``{answer}`` placeholders (for manifests)."""
        return {
            "prompt": f"{self.prompt_prefix}{{prompt}}",
            "pair": f"{self.prompt_prefix}{{prompt}}{self.answer_prefix}{{answer}}",
        }


TEMPLATES: dict[str, Template] = {
    "tldr": Template("tldr", "Post: ", "\nSummary: "),
    "cnndm": Template("cnndm", "Article: ", "\nSummary: "),
    "generic": Template("generic", "", "\n"),
}
"""Known templates; sources without their own (hh, custom, synthetic, ...) use ``generic``."""


def template_for(source: str | None) -> Template:
    """The template of a data source (``tldr``, ``cnndm``; anything else gets ``generic``)."""
    return TEMPLATES.get(str(source).lower() if source is not None else "", TEMPLATES["generic"])


def templates_used(sources: Iterable[str | None]) -> dict[str, dict[str, str]]:
    """``{source: template description}`` for every distinct source (sorted, for manifests and keys)."""
    return {str(s): {"name": template_for(s).name, **template_for(s).describe()}
            for s in sorted({str(s) for s in sources})}


def texts_sha256(texts: Sequence[Text]) -> str:
    """SHA-256 of the texts in order, pieces kept apart (so a different truncation boundary differs)."""
    digest = hashlib.sha256()
    digest.update(f"balpm-texts/{TEMPLATE_FORMAT_VERSION}\n".encode())
    for text in texts:
        blob = json.dumps([text.head, text.prompt, text.tail], ensure_ascii=False)
        digest.update(len(blob.encode()).to_bytes(8, "little"))
        digest.update(blob.encode())
    return digest.hexdigest()


def unique_texts(texts: Sequence[Text]) -> tuple[list[Text], np.ndarray]:
    """``(distinct texts in first-appearance order, inverse)`` with ``texts[i] == unique[inverse[i]]``."""
    index: dict[Text, int] = {}
    inverse_M = np.fromiter((index.setdefault(t, len(index)) for t in texts), dtype=np.int64, count=len(texts))
    return list(index), inverse_M
