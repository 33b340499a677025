"""balpm dashboard: ``balpm dashboard --runs DIR`` (or ``streamlit run dashboard/app.py -- --runs DIR``).

One ``st.Page`` per file in ``dashboard/views/`` (a folder named ``pages/`` here would switch Streamlit
to its legacy v1 multipage mode); every page reads run folders through
:mod:`balpm.experiment.runs` only. The runs folder is fixed when the server starts.
"""
from __future__ import annotations

import os

import streamlit as st

# the package balpm_dashboard is this folder (pyproject maps dashboard/ to that name; installed or editable)
from balpm_dashboard import state, untrusted

# no :material/...: icons: Streamlit would fetch the page favicon from fonts.gstatic.com (no network here)
st.set_page_config(page_title="balpm dashboard", page_icon="📈", layout="wide")

root = state.runs_root()
infos = state.run_infos(root)
TEACHING = state.holds_teaching_world(root, infos)  # the lesson is the landing page then
LABELLING = bool(os.environ.get("BALPM_LABEL_RUN"))  # balpm label RUN_DIR lands on the annotation page
PAGES = [
    st.Page("views/lesson.py", title="Lesson", default=TEACHING and not LABELLING),
    st.Page("views/runs.py", title="Runs", default=not TEACHING and not LABELLING),
    st.Page("views/prompt_space.py", title="Prompt space"),
    st.Page("views/batch_anatomy.py", title="Anatomy of a batch"),
    st.Page("views/learning_curves.py", title="Learning curves"),
    st.Page("views/ablations.py", title="Ablations"),
    st.Page("views/worlds.py", title="Worlds"),
    st.Page("views/inspect.py", title="Inspect a triple"),
    st.Page("views/annotate.py", title="Annotate", default=LABELLING),
]

nav = st.navigation(PAGES)

state.start_projections(root, infos)  # maps not fitted by a sweep are fitted in the background now
with st.sidebar:
    st.markdown("**balpm** · Bayesian active learning for preference models")
    st.caption(f"runs folder: {untrusted.code(root)}")
    n_ok = len(state.usable(infos))
    n_cmp = len(state.compared(infos))
    st.caption(f"{len(infos)} run folder(s), {n_ok} readable, {n_cmp} compared")

nav.run()
