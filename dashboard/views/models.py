"""Models page: the selected models' cards (weighting, accuracy with and without weighting,
parameters, multiply-adds) as a table and a chart, read from checkpoint metadata or the zoo model."""

from __future__ import annotations

from functools import partial

import streamlit as st

from dashboard.inputs import DashboardContext, current_context, open_model, require_models
from dashboard.services import cached_card, guarded
from dashboard.views.common import PLOT_CONFIG
from fmw.figures import model_cards_figure

INTRO = (
    "The selected models' cards: which weighting each uses, its accuracy on the CIFAR-10 test split with the "
    "weighting on and with every gate set to 1 (off), and what it costs in parameters and multiply-adds. The gap "
    "between on and off says how much a network has come to rely on its gates."
)


def render(context: DashboardContext) -> None:
    st.header("Models")
    st.markdown(INTRO)
    if not require_models(context):
        return
    cards = []
    for choice in context.models:
        model = open_model(context, choice)
        if model is not None:
            made = guarded(choice.label, partial(cached_card, choice.cache_key, context.device, model, choice.label))
            if made is not None:
                cards.append(made)
    if not cards:
        return
    st.table(
        [
            {
                "checkpoint": card.name,
                "weighting": card.weighting,
                "top-1 (%)": "—" if card.top1 is None else f"{card.top1:.2f}",
                "top-1, weighting off (%)": "—"
                if card.top1_weighting_off is None
                else f"{card.top1_weighting_off:.2f}",
                "parameters": f"{card.parameters:,}",
                "multiply-adds": f"{card.multiply_adds / 1e6:.2f} M",
                "input": f"{card.input_size[0]}×{card.input_size[1]}",
            }
            for card in cards
        ]
    )
    if all(card.top1 is None for card in cards):
        st.caption(
            "These checkpoints record no test accuracy (e.g. untrained weights); `python -m fmw evaluate` adds it."
        )
    figure = model_cards_figure(
        [card.name for card in cards],
        [card.top1 for card in cards],
        [card.top1_weighting_off for card in cards],
        [card.parameters for card in cards],
        [card.multiply_adds for card in cards],
    )
    st.plotly_chart(figure, key="models-chart", config=PLOT_CONFIG)
    st.caption("Multiply-adds for one image at the checkpoint's input size. Model cards: `checkpoints/README.md`.")


render(current_context())
