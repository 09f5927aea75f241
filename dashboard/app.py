"""Entry point of the fmw dashboard: ``fmw dashboard``, or ``streamlit run dashboard/app.py`` (the
package is installed, so ``dashboard`` imports from anywhere). An ``st.App`` serving the pages of
``dashboard/main.py``, whose start-up warms the process up before the server accepts a connection:
it imports PyTorch, torchvision, plotly and fmw, loads every checkpoint and analyses the default
sample photo with each into the caches the pages read, and builds one Compare figure (plotly sets
up its validators on first use), so the first page a user opens waits for none of it
(``python -m bench.startup`` measures it). Then it moves everything the process holds so far (some
400,000 objects: modules, the models, the warm-up's analyses) out of the garbage collector's reach
(``gc.freeze``), so that a full collection, which Python starts by itself now and then, scans only
what came after instead of holding the interpreter lock while it scans them all (``python -m
bench.server_gc`` measures both).
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import streamlit as st

PAGES = "main.py"


def warm_up() -> None:
    """Fill the caches the first page reads and build one figure the way Compare sends it (and once as
    a validated plotly figure, as the other views make theirs); a failure here is left for the page
    to report."""
    from dashboard.figure_canvas import canvas_payload
    from dashboard.services import preload_files
    from dashboard.settings import set_torch_threads
    from fmw.analysis.changes import site_change
    from fmw.device import select_device
    from fmw.figures.compare import site_change_figure, site_change_spec

    set_torch_threads()
    analyses = [analysis for analysis in preload_files(str(select_device("auto"))) if analysis.sites]
    if analyses:
        change = site_change(analyses[0].sites[0])
        canvas_payload(site_change_spec(change, analyses[0].crop))
        canvas_payload(site_change_figure(change, analyses[0].crop))


def freeze_what_is_loaded() -> None:
    """Free what is unreachable, then move every object the process holds out of the collector's reach
    (``gc.freeze``): a full collection scans only what comes after (``python -m bench.server_gc``)."""
    gc.collect()
    gc.freeze()


@asynccontextmanager
async def warmed_up(_app: st.App) -> AsyncIterator[None]:
    """The server's start-up: warm up (in a worker thread), freeze what it loaded, then serve."""
    await asyncio.to_thread(warm_up)
    freeze_what_is_loaded()
    yield


app = st.App(PAGES, lifespan=warmed_up)
