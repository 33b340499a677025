"""Text -> vectors with Hugging Face models, and a content-addressed feature cache.

``featurize(table, FeatureConfig(...))`` returns :class:`Features`: prompt features (one row per unique
prompt) and prompt+answer features for chosen and rejected (N x 2 x D), float32. The default model is the
bundled MiniLM sentence encoder (no network); any encoder or causal LM id or local folder works.
"""
from balpm.features.cache import FeatureCache, cache_key
from balpm.features.encoder import (
    MINILM,
    Encoder,
    ModelSpec,
    load_encoder,
    minilm_path,
    resolve_device,
    resolve_model,
    tokenize_texts,
)
from balpm.features.featurize import Features, check_table, featurize, table_texts
from balpm.features.templates import TEMPLATES, Template, Text, template_for

__all__ = [
    "MINILM",
    "TEMPLATES",
    "Encoder",
    "FeatureCache",
    "Features",
    "ModelSpec",
    "Template",
    "Text",
    "cache_key",
    "check_table",
    "featurize",
    "load_encoder",
    "minilm_path",
    "resolve_device",
    "resolve_model",
    "table_texts",
    "template_for",
    "tokenize_texts",
]
