"""The gate statistics shipped beside the checkpoints and what they show: where a checkpoint's
statistics file lives (``<folder>/stats/<name>.json``, written by ``fmw stats``), reading it (a file
made from another version of the checkpoint is refused), writing it small, class specificity by
depth per kind and gate stage, and the depth trend in words next to what the SE paper found.

Regenerate the shipped files (about 20 s per checkpoint on two CPU cores) with::

    for kind in none scale spatial channel cbam eca coord simam; do
      python -m fmw stats checkpoints/$kind.safetensors --split test --digits 4 --out checkpoints/stats/$kind.json
    done
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fmw.analysis.layouts import layout_of_stage
from fmw.analysis.stats import GateStatistics
from fmw.layers.descriptions import describe_kind

__all__ = [
    "LEVEL_TOLERANCE",
    "SE_PAPER_FINDING",
    "STATISTICS_FOLDER",
    "ShippedStatistics",
    "SpecificitySeries",
    "depth_finding",
    "file_sha256",
    "regenerate_command",
    "shipped_statistics",
    "specificity_series",
    "statistics_json",
    "statistics_path",
    "statistics_scope",
    "steepest_rise",
]

STATISTICS_FOLDER = "stats"
LEVEL_TOLERANCE = 0.05  # specificities closer than this count as level (the shipped runs moved by < 0.06)
SE_PAPER_FINDING = (
    "Hu et al. (2018), analysing the role of excitation in squeeze-and-excitation networks trained on "
    "ImageNet, found the gates of early layers nearly the same for every class and those of later layers "
    "increasingly class-specific."
)


def statistics_path(checkpoint: Path) -> Path:
    """Where the statistics of ``checkpoint`` are shipped: ``stats/<stem>.json`` beside it."""
    return checkpoint.parent / STATISTICS_FOLDER / f"{checkpoint.stem}.json"


def regenerate_command(checkpoint: Path) -> str:
    """The ``fmw stats`` command that (re)makes the shipped statistics of ``checkpoint``."""
    return f"python -m fmw stats {checkpoint} --split test --digits 4 --out {statistics_path(checkpoint)}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _rounded(value: Any, digits: int) -> Any:
    """``value`` (JSON data) with every float rounded to ``digits`` significant digits."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else value
    if isinstance(value, list):
        return [_rounded(item, digits) for item in value]
    if isinstance(value, dict):
        return {key: _rounded(item, digits) for key, item in value.items()}
    return value


def statistics_json(statistics: GateStatistics, *, checkpoint: Path | None = None, digits: int | None = None) -> str:
    """``statistics`` as the JSON text ``fmw stats`` writes: with the name and SHA-256 of the
    ``checkpoint`` it was made from (so a stale file can be told apart), and, with ``digits``, every
    float rounded to that many significant digits and written compactly (4 digits: about a tenth of
    the size, well below the sampling error of any class mean)."""
    if digits is not None and digits < 1:
        raise ValueError(f"digits must be at least 1, got {digits}")
    data = statistics.to_json()
    if checkpoint is not None:
        data["checkpoint"] = {"file": checkpoint.name, "sha256": file_sha256(checkpoint)}
    if digits is None:
        return json.dumps(data, indent=1)
    return json.dumps(_rounded(data, digits), separators=(",", ":"))


@dataclass(frozen=True)
class ShippedStatistics:
    """A checkpoint's shipped statistics, or why there are none (``problem``, with what to do)."""

    checkpoint: Path
    path: Path
    statistics: GateStatistics | None
    problem: str | None = None


def shipped_statistics(checkpoint: Path) -> ShippedStatistics:
    """Read ``statistics_path(checkpoint)``. A file that records the SHA-256 of another checkpoint
    (the checkpoint was retrained or replaced since) is refused, as are missing and malformed files;
    ``problem`` then says why and how to make a fresh one."""
    path = statistics_path(checkpoint)
    remake = f"make them with: {regenerate_command(checkpoint)}"
    if not path.is_file():
        return ShippedStatistics(checkpoint, path, None, f"no statistics at {path}; {remake}")
    try:
        data = json.loads(path.read_text())
        statistics = GateStatistics.from_json(data)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, ValueError, KeyError, TypeError) as error:
        return ShippedStatistics(checkpoint, path, None, f"{path} is unreadable ({error}); {remake}")
    recorded = data.get("checkpoint", {}).get("sha256") if isinstance(data.get("checkpoint"), dict) else None
    if recorded is not None and recorded != file_sha256(checkpoint):
        return ShippedStatistics(
            checkpoint, path, None, f"{path} was made from another version of {checkpoint.name}; {remake}"
        )
    return ShippedStatistics(checkpoint, path, statistics)


GROUPINGS = {"label": "grouped by true class", "prediction": "grouped by predicted class"}


def statistics_scope(statistics: GateStatistics) -> str:
    """What a statistics file averages over, in words read from its own fields: how many images, the
    file or folder they came from (its name, not where it lay) and the split, and how they were grouped.

    Args:
        statistics: gate statistics, as ``fmw stats`` writes them (``GateStatistics.from_json``).

    Returns:
        e.g. ``"10,000 images of cifar10-jpg.zip (test split), grouped by true class"``.

    Examples:
        >>> from fmw.analysis.findings import shipped_statistics, statistics_scope
        >>> from fmw.settings import SHIPPED_CHECKPOINTS
        >>> statistics = shipped_statistics(SHIPPED_CHECKPOINTS / "eca.safetensors").statistics
        >>> print(statistics_scope(statistics))
        10,000 images of cifar10-jpg.zip (test split), grouped by true class
    """
    location, _, split = statistics.source.rpartition(":")
    if not location:  # no split named
        location, split = split, ""
    name = Path(location).name or location
    where = f"{name} ({split} split)" if split else name
    grouping = GROUPINGS.get(statistics.grouping, f"grouped by {statistics.grouping}")
    return f"{statistics.images:,} images of {where}, {grouping}"


@dataclass(frozen=True)
class SpecificitySeries:
    """Class specificity by depth of one gate stage of one model: relative depths (0..1), values
    (NaN where undefined) and site names, for the sites that have this stage."""

    model: str
    kind: str
    stage: str
    stages_in_model: int
    depths: np.ndarray
    values: np.ndarray
    sites: list[str]

    @property
    def label(self) -> str:
        """The model's name, with the stage when the model has more than one ("cbam, spatial gate")."""
        return self.model if self.stages_in_model == 1 else f"{self.model}, {self.stage} gate"

    @property
    def layout(self) -> str:
        """The stage's gate layout ("channel" for "channel" and "channel_2": stages are named after it)."""
        return layout_of_stage(self.stage)

    @property
    def numbers(self) -> str:
        """The defined specificities in depth order, two decimals each: "0.45 → 0.59 → 0.88"."""
        return " → ".join(f"{value:.2f}" for value in _defined(self))

    @property
    def rise(self) -> float | None:
        """Specificity at the last site with one minus at the first (None with fewer than two)."""
        values = _defined(self)
        return float(values[-1] - values[0]) if len(values) >= 2 else None


def specificity_series(statistics: GateStatistics, model: str) -> list[SpecificitySeries]:
    """One series per gate stage name ("channel", "spatial", "coord_w", ...; in the order the sites
    first apply them) of ``statistics``' sites; none for a model without gates."""
    stages = list(dict.fromkeys(stage for site in statistics.sites for stage in site.stages))
    series = []
    for stage in stages:
        sites = [site for site in statistics.sites if stage in site.stages]
        values = [site.stages[stage].specificity for site in sites]
        series.append(
            SpecificitySeries(
                model=model,
                kind=sites[0].kind,
                stage=stage,
                stages_in_model=len(stages),
                depths=np.array([site.relative_depth for site in sites], dtype=np.float64),
                values=np.array([np.nan if value is None else value for value in values], dtype=np.float64),
                sites=[site.name for site in sites],
            )
        )
    return series


TRENDS = (
    "rises from the first site to the last for",
    "rises, then falls for",
    "stays about level for",
    "falls from the first site to the last for",
)


def _trend(values: np.ndarray) -> str | None:
    """How a specificity series changes with depth (one of ``TRENDS``), None when it is 0 throughout."""
    if np.all(np.abs(values) < 1e-9):
        return None
    first, last, peak = float(values[0]), float(values[-1]), float(values.max())
    inside = values.argmax() not in (0, len(values) - 1)
    if inside and peak - max(first, last) >= LEVEL_TOLERANCE:
        return TRENDS[1]
    if last - first >= LEVEL_TOLERANCE:
        return TRENDS[0]
    if first - last >= LEVEL_TOLERANCE:
        return TRENDS[3]
    return TRENDS[2]


def steepest_rise(series: Sequence[SpecificitySeries], layout: str = "channel") -> SpecificitySeries | None:
    """Of the series of ``layout`` gates whose class specificity rises from the first site to the last
    (as ``depth_finding`` words it: by ``LEVEL_TOLERANCE`` or more, without a peak in between), the
    one that rises most; the earlier on a tie, None when none rises. With the default layout it is the
    clearest instance of the SE paper's finding, which is about channel gates (one value per channel).

    Examples:
        >>> depths = np.array([0.0, 0.5, 1.0])
        >>> def line(model, stage, values):
        ...     return SpecificitySeries(model, model, stage, 1, depths, np.array(values), ["a", "b", "c"])
        >>> lines = [line("se", "channel", [0.5, 0.6, 0.7]), line("eca", "channel", [0.4, 0.6, 0.9]),
        ...          line("coord", "coord_h", [0.3, 0.5, 0.9]), line("peak", "channel", [0.1, 0.9, 0.7])]
        >>> steepest_rise(lines).model, steepest_rise(lines, "coord_h").model, steepest_rise(lines, "full")
        ('eca', 'coord', None)
    """
    rising = [line for line in series if line.layout == layout and _trend(_defined(line)) == TRENDS[0]]
    return max(rising, key=lambda line: line.rise or 0.0, default=None)


def _defined(line: SpecificitySeries) -> np.ndarray:
    """The series' specificities where they are defined."""
    return line.values[np.isfinite(line.values)]


def _named(line: SpecificitySeries) -> str:
    """The series' label, with the kind's short name where the model is named after its kind ("channel (SE)")."""
    if line.stages_in_model == 1 and line.model == line.kind:
        return describe_kind(line.kind).name
    return line.label


def depth_finding(series: Sequence[SpecificitySeries]) -> str:
    """``SE_PAPER_FINDING``, then what ``series`` show, one clause per trend: which rise with depth,
    which rise then fall, which stay level (within ``LEVEL_TOLERANCE``), which fall, which are static."""
    groups: dict[str | None, list[str]] = {}
    for line in series:
        values = _defined(line)
        if len(values) < 2:
            continue
        trend = _trend(values)
        groups.setdefault(trend, []).append(_named(line) if trend is None else f"{_named(line)} ({line.numbers})")
    if not groups:
        return f"{SE_PAPER_FINDING} No model here has gates at two or more sites to compare."
    clauses = [f"{trend} {_listing(groups[trend])}" for trend in TRENDS if trend in groups]
    text = SE_PAPER_FINDING
    if clauses:
        text += f" Here, class specificity {'; it '.join(clauses)}."
    if None in groups:
        many = len(groups[None]) > 1
        text += (
            f" The gate{'s' if many else ''} of {_listing(groups[None])} {'are' if many else 'is'} the same for "
            "every image: specificity 0 at every site."
        )
    return text


def _listing(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
