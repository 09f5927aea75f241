"""fmw dashboard entry point (placeholder until the dashboard issue lands)."""

import streamlit as st

st.set_page_config(page_title="fmw: feature-map weighting", layout="wide")
st.title("fmw: feature-map weighting")
st.write("The dashboard is being built; the library is in `fmw/`.")
