"""What ``balpm dashboard`` serves: the app (``app.py``) behind the Host-header check.

``streamlit run asgi_app.py -- --runs DIR [--allow-host NAME ...]`` finds the ``st.App`` below (Streamlit's
public ASGI entry point) and serves it with uvicorn, like ``streamlit run app.py`` but with
:class:`balpm_dashboard.host_guard.HostGuard` in front: requests whose ``Host`` is not a loopback name,
the bound address or an allowed name get 403 (see :mod:`balpm_dashboard.host_guard`). Running
``streamlit run app.py`` directly works too, without that check.
"""
from __future__ import annotations

import sys

import streamlit as st
from starlette.middleware import Middleware
from streamlit import config

from balpm_dashboard.host_guard import HostGuard, allowed_hosts, hosts_from_argv

ALLOWED = allowed_hosts(config.get_option("server.address"), hosts_from_argv(sys.argv[1:]))

app = st.App("app.py", middleware=[Middleware(HostGuard, allowed=ALLOWED)])
