"""Entry point of the fmw dashboard (`fmw dashboard`, or `streamlit run dashboard/app.py`; the
package is installed, so ``dashboard`` imports from anywhere): page setup, the sidebar
and the list of views; each view is one page script under ``dashboard/views/``.

To add a view, write ``views/<name>.py`` (read ``current_context()``, render) and list it in VIEWS.
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st
import torch

from dashboard.inputs import sidebar
from dashboard.services import guarded

VIEWS_DIRECTORY = Path(__file__).resolve().parent / "views"
VIEWS = [
    st.Page(VIEWS_DIRECTORY / "compare.py", title="Compare", icon=":material/view_column:", default=True),
    st.Page(VIEWS_DIRECTORY / "explorer.py", title="Layer explorer", icon=":material/layers:"),
    st.Page(VIEWS_DIRECTORY / "attribution.py", title="Attribution", icon=":material/target:"),
    st.Page(VIEWS_DIRECTORY / "weighting_off.py", title="Weighting off", icon=":material/toggle_off:"),
    st.Page(VIEWS_DIRECTORY / "batch.py", title="Batch statistics", icon=":material/bar_chart:"),
    st.Page(VIEWS_DIRECTORY / "statistics.py", title="Gate statistics", icon=":material/grid_on:"),
    st.Page(VIEWS_DIRECTORY / "models.py", title="Models", icon=":material/table_chart:"),
]
# Interactive inference on small inputs is fastest single-threaded, and concurrent sessions then
# each get a core instead of fighting over OpenMP threads; FMW_TORCH_THREADS overrides.
torch.set_num_threads(int(os.environ.get("FMW_TORCH_THREADS", "1")))

st.set_page_config(page_title="fmw: feature-map weighting", page_icon=":material/grid_view:", layout="wide")
page = st.navigation(VIEWS)
sidebar()
guarded(f"The {page.title} view", page.run)
