"""Annotate: label a ``balpm select`` batch pair by pair (``balpm label RUN_DIR`` lands here).

The prompt, both answers side by side (shown as plain text through :mod:`balpm_dashboard.untrusted`), and
buttons A / B / tie / skip / back with Streamlit's own keyboard shortcuts (``st.button(shortcut=...)``:
a, b, t, s, left arrow). Each label is saved to the run folder's ``labels.sqlite`` (:class:`balpm.labels.LabelStore`)
in the button's callback, before the page redraws; the page opens at the first unlabelled pair, so a reload,
a second tab or a restarted server continue where the store is. When the batch is done: the next round
(:func:`balpm.labels.next_round`) and the export.
"""
from __future__ import annotations

import os

import streamlit as st

from balpm_dashboard import state, untrusted

from balpm.errors import BalpmError
from balpm.labels import LABELS, LabelStore, export_bytes, next_round

LABEL_RUN_ENV = "BALPM_LABEL_RUN"  # set by balpm label (balpm.cli.label)
ANNOTATOR_ENV = "BALPM_ANNOTATOR"
SHORTCUTS = {"A": "A", "B": "B", "tie": "T", "skip": "S"}
BUTTON_TEXT = {"A": "A is better", "B": "B is better", "tie": "Tie", "skip": "Skip"}

root = state.runs_root()
infos = state.run_infos(root)
st.title("Annotate")


def _is_selection(run_id: str) -> bool:
    try:
        return "select" in state.config(root, run_id)[1]
    except Exception:  # noqa: BLE001 - an unreadable folder is not offered
        return False


selections = [i.run_id for i in state.usable(infos) if i.run_id.startswith("select-") and _is_selection(i.run_id)]
if not selections:
    st.info("No selection run in this runs folder: choose a batch to label with balpm select, then open it with "
            "balpm label RUN_DIR.")
    st.stop()
wanted = os.environ.get(LABEL_RUN_ENV)
rid = st.selectbox("selection run", selections, key="an_run",
                   index=selections.index(wanted) if wanted in selections else 0)
annotator = os.environ.get(ANNOTATOR_ENV) or "annotator"
try:
    store = LabelStore(root / rid)
    rnd = store.last_round()
    batch = store.batch(rnd)
    round_labels = store.labels(rnd)
    labels = dict(zip(round_labels["pair_id"], round_labels["label"]))
except BalpmError as exc:
    st.error(untrusted.md(str(exc)))
    st.stop()

pos_key = f"an_pos:{rid}:{rnd}"
if pos_key not in st.session_state:  # a new session (a reload, a restarted server): the first unlabelled pair
    first = store.first_unlabelled(rnd)
    st.session_state[pos_key] = len(batch) if first is None else first
pos = int(st.session_state[pos_key])


def _save(pair_id: str, value: str, at: int) -> None:
    """Button callback: save the label at once, then move to the next unlabelled pair after ``at``."""
    try:
        store.set(rnd, pair_id, value, annotator)
    except BalpmError as exc:
        st.session_state["an_error"] = str(exc)
        return
    done = set(store.labels(rnd)["pair_id"])
    later = [i for i in range(at + 1, len(batch)) if batch["pair_id"].iloc[i] not in done]
    earlier = [i for i in range(at) if batch["pair_id"].iloc[i] not in done]
    st.session_state[pos_key] = (later or earlier or [len(batch)])[0]


def _back(at: int) -> None:
    st.session_state[pos_key] = max(0, at - 1)


prog = store.progress(rnd)
st.progress(prog.done / max(1, prog.total),
            text=f"round {rnd}: {prog.done} of {prog.total} labelled · " + " · ".join(f"{k} {v}" for k, v in prog.counts.items()))
if "an_error" in st.session_state:
    st.error(untrusted.md(st.session_state.pop("an_error")))

if pos < len(batch):
    row = batch.iloc[pos]
    pid = str(row["pair_id"])
    current = labels.get(pid)
    st.subheader(f"Pair {pos + 1} of {len(batch)}")
    st.caption(f"pair {untrusted.code(pid)} · prompt {untrusted.code(row['prompt_id'])} · "
               + (f"labelled **{untrusted.md(current)}**" if current else "not labelled yet"))
    st.markdown("**Prompt**")
    with st.container(border=True, height=240):  # long posts scroll inside; the answers and buttons stay in view
        st.text(untrusted.text(row["prompt"]))
    cols = st.columns(2)
    for col, name, text in ((cols[0], "A", row["answer_a"]), (cols[1], "B", row["answer_b"])):
        with col, st.container(border=True):
            st.markdown(f"**Answer {name}**")
            st.text(untrusted.text(text))
    with st.container(horizontal=True):
        for value in LABELS:
            st.button(BUTTON_TEXT[value], key=f"an_{value}", shortcut=SHORTCUTS[value], on_click=_save,
                      args=(pid, value, pos), type="primary" if current == value else "secondary")
        st.button("Back", key="an_back", shortcut="Left", on_click=_back, args=(pos,), disabled=pos == 0)
    st.caption("Keys: a, b, t (tie), s (skip), left arrow (back). Each label is saved at once.")
else:
    st.success(f"Round {rnd} is done: {prog.done} of {prog.total} labelled.")
    c = st.columns(2)
    c[0].button("Back to the last pair", key="an_back", shortcut="Left", on_click=_back, args=(len(batch),))
    if prog.complete and c[1].button("Select the next round", key="an_next", type="primary"):
        with st.spinner("training on every label and selecting the next batch..."):
            try:
                result = next_round(root / rid)
            except BalpmError as exc:
                st.error(untrusted.md(str(exc)))
                st.stop()
        st.session_state.pop(f"an_pos:{rid}:{result.round}", None)
        st.rerun()

exported = store.preference_table()
st.divider()
st.caption(f"Export: {len(exported.table)} A/B labels as a prompt, chosen, rejected table ({exported.ties} tie(s) and "
           f"{exported.skips} skip(s) left out), the file balpm run --data and balpm select --labelled read.")
c = st.columns(2)
c[0].download_button("Export labels (JSONL)", export_bytes(exported.table, ".jsonl"), f"{rid}-labels.jsonl",
                     "application/jsonl", key="an_export_jsonl")
c[1].download_button("Export labels (CSV)", export_bytes(exported.table, ".csv"), f"{rid}-labels.csv", "text/csv",
                     key="an_export_csv")
with st.expander(f"labels of round {rnd}"):
    st.dataframe(untrusted.frame(round_labels), hide_index=True, width="stretch")
