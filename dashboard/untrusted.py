"""Untrusted text made inert wherever the dashboard shows it: the one place that escapes.

Untrusted = anything read from a runs folder or a data set: run ids and folder names, the runs folder's
path, error messages from status.json, config values, prompts and answers, prompt ids, cluster names,
metric names (parquet column names). A hostile runs folder must not make the browser fetch a URL, show
a link, colour text or typeset LaTeX.

Four outlets:

- :func:`md`: inline text for anything Streamlit renders as Markdown (``st.markdown``, ``st.caption``,
  ``st.error``/``warning``/``info``/``success``, ``st.subheader``, widget labels, expander labels,
  ``st.progress`` text). Every ASCII punctuation character is backslash-escaped (no link, image, HTML
  tag, ``:colour[...]`` directive, ``$`` KaTeX, emphasis, table), and a WORD JOINER (U+2060, invisible)
  follows every ``:`` and ``@`` and every ``www`` before a dot: Streamlit's emoji and material-icon
  shortcodes (``:smile:``) and GFM's autolinks (``http://...``, ``www.x``, ``a@b.c``) are matched on
  the text *after* escapes are resolved, so escaping alone does not stop them.
- :func:`code`: an inline code span (``st.markdown``/``st.caption``): shown verbatim in monospace.
- :func:`plot`: plotly strings (titles, trace names, annotations, hover text): plotly renders a subset
  of HTML (``<a href>``, ``<b>``, ``<br>``, ``<span style>``) and entities, substitutes ``%{...}`` in
  hover templates and hands ``$...$`` to MathJax; all of those are neutralised.

- :func:`text`, :func:`frame` and :func:`tree`: longer text (a prompt, an answer) for
  ``st.text``/``st.code``, the string cells of a table for ``st.dataframe`` and the strings of a JSON
  document for ``st.json``, which never render markup but would still pass
  control characters and right-to-left overrides (which make text read backwards) to the screen.

All of them show control and bidirectional-override characters as visible ``\\xNN``/``\\uNNNN``
escapes; the first three also put the text on one line and cut it to ``limit`` characters.
"""
from __future__ import annotations

import html
import re
import string
import unicodedata
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

JOINER = "\u2060"  # WORD JOINER: invisible, no line break; breaks shortcodes and autolinks apart
_PUNCT = frozenset(string.punctuation)
_WWW = re.compile(r"www(?=\.)", re.IGNORECASE)
# format characters that reorder or hide text (bidi overrides and isolates, marks); other Cf (soft
# hyphen, zero-width joiner in emoji sequences) are harmless and kept
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _visible(ch: str) -> str:
    code_point = ord(ch)
    return f"\\x{code_point:02x}" if code_point < 0x100 else f"\\u{code_point:04x}"


def _controls_visible(text: str, keep: str = "") -> str:
    return "".join(_visible(ch) if ch not in keep and (ch in _BIDI or unicodedata.category(ch) in ("Cc", "Cs"))
                   else ch for ch in text)


def one_line(text: Any, limit: int = 2000) -> str:
    """``text`` as one line: whitespace runs become one space, control characters (C0, DEL, C1, lone
    surrogates) and bidirectional overrides become visible escapes (``\\x1b``, ``\\u202e``), and text
    longer than ``limit`` characters is cut with ``...``."""
    one = " ".join(str(text).split())
    if len(one) > limit:
        one = one[:limit] + "..."
    return _controls_visible(one)


def text(value: Any) -> str:
    """``value`` for ``st.text``/``st.code`` or a table cell: line breaks and tabs kept, other control
    characters and bidirectional overrides shown as visible escapes."""
    return _controls_visible(str(value).replace("\r\n", "\n"), keep="\n\t")


def tree(value: Any) -> Any:
    """A parsed JSON document for ``st.json`` with every string in it (keys too) passed through
    :func:`text`."""
    if isinstance(value, str):
        return text(value)
    if isinstance(value, dict):
        return {tree(k): tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [tree(v) for v in value]
    return value


def frame(df: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``df`` for ``st.dataframe`` with every string cell passed through :func:`text` (numbers
    untouched; downloads should keep using ``df`` itself)."""
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object or pd.api.types.is_string_dtype(out[col].dtype):
            out[col] = pd.Series([text(v) if isinstance(v, str) else v for v in out[col]], index=out.index, dtype=object)
    return out


def md(text: Any, limit: int = 2000) -> str:
    """``text`` as inert inline Markdown: shown exactly as typed (one line), nothing rendered."""
    one = _WWW.sub(lambda m: m.group(0) + JOINER, one_line(text, limit))
    out = []
    for ch in one:
        if ch in _PUNCT:
            out.append("\\" + ch)
            if ch in ":@":
                out.append(JOINER)
        else:
            out.append(ch)
    return "".join(out)


def code(text: Any, limit: int = 2000) -> str:
    """``text`` as an inline Markdown code span (verbatim, monospace). A code span cannot contain its
    own delimiter, so backticks are shown as ``'``."""
    return f"`` {one_line(text, limit).replace('`', chr(39))} ``"


def plot(text: Any, limit: int = 500) -> str:
    """``text`` for a plotly title, trace name, annotation or hover text: shown as typed, no tag,
    entity, hover-template field or LaTeX."""
    escaped = html.escape(one_line(text, limit), quote=False)  # < > & : no tag, no entity
    return escaped.replace("$", "&#36;").replace("{", "&#123;")  # no MathJax, no %{field}


def plots(values: Iterable[Any], limit: int = 500) -> np.ndarray:
    """:func:`plot` of each value (a per-point ``text`` array for plotly hovers)."""
    return np.array([plot(v, limit) for v in np.asarray(values, dtype=object).ravel()], dtype=object)
