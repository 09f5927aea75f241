"""The fmw Streamlit dashboard: ``app.py`` (entry point and page list), ``inputs.py`` (sidebar),
``services.py`` (cached calls into fmw) and one module per view under ``views/``."""
