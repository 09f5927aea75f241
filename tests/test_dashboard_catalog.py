"""The dashboard's models are keyed by a unique key, never by their label: a command-line model named like
a checkpoint in the folder (``fmw dashboard --model my/cbam.safetensors`` beside the shipped ``cbam``)
appears beside it, told apart in words, and each opens its own weights; the caches are bounded by bytes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from dashboard import caching, catalog
from fmw.cli.model_config import MODELS_VARIABLE, ModelEntry, entries_to_json
from fmw.io.model_spec import ModelOptions
from tests.conftest import make_checkpoint
from tests.dashboard_helpers import APP, figures, restore_threads  # noqa: F401


@pytest.fixture
def two_of_a_name(tmp_path: Path, monkeypatch) -> Iterator[tuple[Path, Path]]:
    folder = make_checkpoint(tmp_path / "checkpoints" / "cbam.safetensors", "cbam", seed=1)
    mine = make_checkpoint(tmp_path / "my" / "cbam.safetensors", "cbam", seed=2)
    monkeypatch.setenv("FMW_CHECKPOINT_DIR", str(folder.parent))
    monkeypatch.setenv(MODELS_VARIABLE, entries_to_json([ModelEntry(str(mine), ModelOptions())]))
    monkeypatch.chdir(tmp_path)  # no fmw-models.toml here
    catalog.command_line_entries.cache_clear()
    yield folder, mine
    catalog.command_line_entries.cache_clear()


def test_two_models_of_one_label_both_stay_with_their_own_weights(two_of_a_name) -> None:
    _, mine = two_of_a_name
    _, files = catalog.file_choices()
    offered = catalog.distinct_labels([*files, *catalog.command_line_choices(catalog.command_line_entries())])
    assert [choice.label for choice in offered] == ["cbam", f"cbam ({mine})"]
    assert len({choice.key for choice in offered}) == 2
    opened = [catalog.open_choice(choice, "cpu", {}) for choice in offered]
    first, second = (dict(model.model.named_parameters()) for model in opened)
    assert any(not torch.equal(first[name], second[name]) for name in first), "each label opens its own file"


def test_the_sidebar_offers_both_and_compare_draws_both(two_of_a_name, restore_threads) -> None:  # noqa: F811
    from streamlit.testing.v1 import AppTest

    _, mine = two_of_a_name
    app = AppTest.from_file(APP, default_timeout=120).run()
    assert not app.exception and not app.error
    chooser = app.multiselect(key="checkpoints")
    assert chooser.values == ["cbam", f"cbam ({mine})"]
    assert len(set(chooser.value)) == 2 and not set(chooser.value) & set(chooser.values), "keyed by keys"
    assert {"compare-cbam", f"compare-cbam ({mine})"} <= set(figures(app))


def test_a_cache_holds_at_most_its_budget_of_bytes(monkeypatch) -> None:
    monkeypatch.setenv("FMW_TEST_BUDGET_MB", "1")
    cache: caching.ByteBoundedCache[np.ndarray] = caching.ByteBoundedCache(
        lambda: caching.budget_bytes("FMW_TEST_BUDGET_MB", 64)
    )
    for index in range(10):
        cache.put(index, np.zeros(300_000, np.uint8))  # 0.29 MB each: three fit in 1 MB
    assert cache.held <= caching.MB and len(cache) == 3
    assert cache.get(9) is not None and cache.get(0) is None, "the least recently used go first"
    assert cache.put("huge", np.zeros(2 * caching.MB, np.uint8)).nbytes == 2 * caching.MB
    assert "huge" not in cache, "a value larger than the budget is returned, not kept"
    monkeypatch.setenv("FMW_TEST_BUDGET_MB", "lots")
    with pytest.raises(ValueError, match="in MB"):
        cache.put("x", np.zeros(1))
