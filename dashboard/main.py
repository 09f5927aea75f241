"""The dashboard's script, run once per page view (``dashboard/app.py`` serves it; AppTest runs it
directly): page setup, the sidebar and the list of views; each view is one page script under
``dashboard/views/``.

To add a view, write ``views/<name>.py`` (read ``current_context()``, render) and list it in VIEWS.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st

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
STARTING = "Starting: loading PyTorch, fmw and the models…"


def main() -> None:
    st.set_page_config(page_title="fmw: feature-map weighting", page_icon=":material/grid_view:", layout="wide")
    page = st.navigation(VIEWS)
    with st.spinner(STARTING):  # shown only if the imports take a while (dashboard/app.py does them before serving)
        from dashboard.inputs import sidebar
        from dashboard.services import guarded
        from dashboard.settings import set_torch_threads
    set_torch_threads()
    sidebar()
    guarded(f"The {page.title} view", page.run)


main()
