"""The balpm Streamlit dashboard: ``app.py`` (navigation), ``views/`` (one file per page;
not ``pages/``: Streamlit treats a ``pages/`` folder beside the entry script as a legacy v1 multipage app
and would then run a page directly, without ``app.py``, when a fresh session opens its URL), and three
plain-Python helpers: ``frames`` (data preparation), ``plots`` (plotly figures) and ``jobs`` (background
engine runs). ``state`` holds the Streamlit caches. Start it with ``balpm dashboard --runs DIR``.
"""
