"""Figures of what one weighting site did: feature-map montages before and after, channel gates as
bars, spatial gates as maps and over the image."""

from __future__ import annotations

import base64
import hashlib
import io
import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
from PIL import Image
from plotly.subplots import make_subplots

from fmw.figures.style import (
    DIFFERENCE_COLORSCALE,
    GATE_COLORSCALE,
    MAP_HOVER,
    MAPS_COLORSCALE,
    STAGE_COLOURS,
    TIGHT_MARGIN,
    _coloraxis,
    _image_axes,
    symmetric_limit,
)

OVERLAY_MAX_SIDE = 300  # a photo under a gate is sent downscaled to this (sharp in a Compare column on 2x screens)
PHOTOS_KEPT = 16  # photos under gates kept encoded (the figures of one image share one)


@dataclass(frozen=True)
class Montage:
    """Maps tiled row by row: ``values`` and ``channels`` (the channel shown at each pixel, -1 in
    the gaps) have shape (rows * (H + gap) - gap, columns * (W + gap) - gap)."""

    values: np.ndarray
    channels: np.ndarray
    rows: int
    columns: int


def _grid_columns(count: int, tile_height: int, tile_width: int) -> int:
    """Columns that make the montage roughly square."""
    return max(1, math.ceil(math.sqrt(count * tile_height / tile_width)))


def montage(
    maps: np.ndarray,
    order: Sequence[int] | np.ndarray | None = None,
    columns: int | None = None,
    gap: int = 1,
    per_map_scale: bool = False,
) -> Montage:
    """Tile ``maps`` (C, H, W) in ``order`` (default: by index). With ``per_map_scale`` every
    tile is divided by its own largest absolute value, so each spans [-1, 1]."""
    if maps.ndim != 3:
        raise ValueError(f"maps must be (channels, height, width), got shape {maps.shape}")
    count, height, width = maps.shape
    order = np.arange(count) if order is None else np.asarray(order, dtype=np.int64)
    tiles = maps[order].astype(np.float32)
    if per_map_scale:
        limits = np.abs(tiles).reshape(len(order), -1).max(axis=1)
        tiles = tiles / np.where(limits > 0, limits, 1.0)[:, None, None]
    columns = columns or _grid_columns(len(order), height, width)
    rows = max(1, math.ceil(len(order) / columns))
    values = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap), np.nan, np.float32)
    channels = np.full(values.shape, -1, np.int32)
    for position, (channel, tile) in enumerate(zip(order, tiles)):
        top, left = (position // columns) * (height + gap), (position % columns) * (width + gap)
        values[top : top + height, left : left + width] = tile
        channels[top : top + height, left : left + width] = channel
    return Montage(values=values, channels=channels, rows=rows, columns=columns)


def _channel_indices(channels: np.ndarray) -> np.ndarray:
    """The montage's channel map in the smallest unsigned type that holds it (fewer bytes to
    send); gaps become 0, which hover never shows since z is NaN there."""
    return np.maximum(channels, 0).astype(np.uint8 if channels.max(initial=0) < 256 else np.uint16)


def _grid_trace(
    maps: np.ndarray,
    order: Sequence[int] | np.ndarray | None,
    per_map_scale: bool,
    name: str,
    coloraxis: str,
) -> go.Heatmap:
    """One heatmap over the montage. Hover shows the channel (``customdata``) and the value: z
    itself, or with ``per_map_scale`` (where z is rescaled per tile) the raw value carried as a
    second ``customdata`` plane."""
    tiled = montage(maps, order, per_map_scale=per_map_scale)
    if per_map_scale:
        raw = montage(maps, order).values
        customdata = np.stack([tiled.channels.astype(np.float32), raw], axis=-1)
        hovertemplate = MAP_HOVER
    else:
        customdata = _channel_indices(tiled.channels)
        hovertemplate = "channel %{customdata}<br>value %{z:.4g}<extra>%{fullData.name}</extra>"
    return go.Heatmap(
        z=tiled.values,
        customdata=customdata,
        hovertemplate=hovertemplate,
        hoverongaps=False,
        name=name,
        coloraxis=coloraxis,
    )


def feature_grid_figure(
    maps: np.ndarray,
    *,
    order: Sequence[int] | np.ndarray | None = None,
    per_map_scale: bool = False,
    limit: float | None = None,
    title: str = "",
) -> go.Figure:
    """All maps (C, H, W) as one heatmap trace; colour range ±``limit`` (default: the maps'
    largest absolute value), or each map scaled to its own range with ``per_map_scale``."""
    scale = 1.0 if per_map_scale else (limit or symmetric_limit(maps))
    figure = go.Figure(_grid_trace(maps, order, per_map_scale, "maps", "coloraxis"))
    figure.update_layout(title=title, coloraxis=_coloraxis(MAPS_COLORSCALE, scale), margin=TIGHT_MARGIN)
    _image_axes(figure)
    return figure


def explorer_grids_figure(
    before: np.ndarray,
    after: np.ndarray,
    *,
    order: Sequence[int] | np.ndarray | None = None,
    per_map_scale: bool = False,
    height: int = 480,
) -> go.Figure:
    """before | after | difference (after - before), all channels, one trace per grid. Before
    and after share a colour range (per map with ``per_map_scale``); the difference has its own."""
    difference = after - before
    figure = make_subplots(
        rows=1, cols=3, subplot_titles=("before", "after", "difference (after − before)"), horizontal_spacing=0.03
    )
    figure.add_trace(_grid_trace(before, order, per_map_scale, "before", "coloraxis"), row=1, col=1)
    figure.add_trace(_grid_trace(after, order, per_map_scale, "after", "coloraxis"), row=1, col=2)
    figure.add_trace(_grid_trace(difference, order, per_map_scale, "difference", "coloraxis2"), row=1, col=3)
    maps_limit = 1.0 if per_map_scale else symmetric_limit(before, after)
    difference_limit = 1.0 if per_map_scale else symmetric_limit(difference)
    figure.update_layout(
        height=height,
        coloraxis=_coloraxis(MAPS_COLORSCALE, maps_limit, "map", x=1.0, len=0.45, y=0.75),
        coloraxis2=_coloraxis(DIFFERENCE_COLORSCALE, difference_limit, "diff", x=1.0, len=0.45, y=0.22),
        margin=TIGHT_MARGIN,
    )
    _image_axes(figure, subplots=(1, 2, 3))
    return figure


def _channel_gate_trace(gate: np.ndarray, order: np.ndarray) -> go.Bar:
    """The channel gate as bars in ``order``; hover names each bar's channel."""
    return go.Bar(
        x=np.arange(gate.size),
        y=gate[order].astype(np.float32),
        customdata=order,
        hovertemplate="channel %{customdata}<br>gate %{y:.4g}<extra></extra>",
        marker_color=STAGE_COLOURS["channel"],
        name="channel gate",
    )


def channel_gate_figure(
    gate: np.ndarray,
    *,
    sort: bool = True,
    upper: float | None = None,
    title: str = "channel gate",
    height: int = 260,
) -> go.Figure:
    """The channel gate (C,) as one bar trace: sorted largest first (x = rank) or by channel
    index; hover names the channel. ``upper`` fixes the y range to [min(0, gate), upper]."""
    order = np.argsort(-gate, kind="stable") if sort else np.arange(gate.size)
    figure = go.Figure(_channel_gate_trace(gate, order))
    figure.update_layout(
        title=title,
        height=height,
        bargap=0.05,
        margin=TIGHT_MARGIN,
        xaxis_title="channels, largest gate first" if sort else "channel",
    )
    if upper is not None:
        figure.update_yaxes(range=[min(0.0, float(gate.min())), upper])
    return figure


def _positions(shape: tuple[int, ...]) -> np.ndarray:
    """(row, column) of every cell of an (H, W) map, as hover data."""
    return np.indices(shape[:2], dtype=np.int16).transpose(1, 2, 0)


def _spatial_gate_trace(gate: np.ndarray, hovertemplate: str, **placement: object) -> go.Heatmap:
    """A spatial gate (H, W) as a heatmap on the fixed range [0, 1]."""
    return go.Heatmap(
        z=gate.astype(np.float32),
        zmin=0.0,
        zmax=1.0,
        colorscale=GATE_COLORSCALE,
        hovertemplate=hovertemplate,
        colorbar={"thickness": 10},
        **placement,
    )


def _finish_image_figure(figure: go.Figure, title: str, height: int) -> go.Figure:
    figure.update_layout(title=title, height=height, margin=TIGHT_MARGIN)
    _image_axes(figure)
    return figure


def spatial_gate_figure(gate: np.ndarray, *, title: str = "spatial gate", height: int = 260) -> go.Figure:
    """The spatial gate (H, W) as one heatmap on the fixed range [0, 1]."""
    trace = _spatial_gate_trace(gate, "row %{y}, column %{x}<br>gate %{z:.4g}<extra></extra>")
    return _finish_image_figure(go.Figure(trace), title, height)


def overlay_cells(
    gate: np.ndarray, width: float, height: float, hover: str, opacity: float, **placement: object
) -> go.Heatmap:
    """A spatial gate (h, w) as a heatmap whose cells each cover (height / h) x (width / w) pixels of
    an image drawn under it; hover shows the cell's row and column."""
    dx, dy = width / gate.shape[1], height / gate.shape[0]
    return _spatial_gate_trace(
        gate,
        f"{hover}<extra></extra>",
        customdata=_positions(gate.shape),
        x0=dx / 2 - 0.5,
        dx=dx,
        y0=dy / 2 - 0.5,
        dy=dy,
        opacity=opacity,
        **placement,
    )


_PHOTOS: OrderedDict[str, tuple[str, int, int]] = OrderedDict()


def _photo_source(image: np.ndarray) -> tuple[str, int, int]:
    """``image`` (H, W, 3 uint8) downscaled to at most ``OVERLAY_MAX_SIDE`` as a JPEG data URI, with
    its new width and height: a few kilobytes where the raw pixels would be a megabyte of JSON. The
    last ``PHOTOS_KEPT`` are kept by a digest of their pixels: every site of a model draws one photo."""
    digest = hashlib.blake2b(np.ascontiguousarray(image).tobytes(), digest_size=16)
    digest.update(repr(image.shape).encode())
    key = digest.hexdigest()
    if key in _PHOTOS:
        _PHOTOS.move_to_end(key)
        return _PHOTOS[key]
    _PHOTOS[key] = _encode_photo(image)
    while len(_PHOTOS) > PHOTOS_KEPT:
        _PHOTOS.popitem(last=False)
    return _PHOTOS[key]


def _encode_photo(image: np.ndarray) -> tuple[str, int, int]:
    photo = Image.fromarray(image)
    scale = min(1.0, OVERLAY_MAX_SIDE / max(photo.size))
    if scale < 1.0:
        size = (max(1, round(photo.width * scale)), max(1, round(photo.height * scale)))
        photo = photo.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    photo.save(buffer, "JPEG", quality=90)
    return f"data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode()}", photo.width, photo.height


def spatial_overlay_figure(
    image: np.ndarray,
    gate: np.ndarray,
    *,
    opacity: float = 0.5,
    title: str = "spatial gate over the input",
    height: int = 320,
) -> go.Figure:
    """The spatial gate (h, w) stretched over ``image`` (H, W, 3 uint8): an image trace (the photo as a
    JPEG of at most ``OVERLAY_MAX_SIDE`` pixels a side) and one semi-transparent heatmap whose cells each
    cover (H / h) x (W / w) of the photo."""
    source, image_width, image_height = _photo_source(image)
    cells = overlay_cells(
        gate, image_width, image_height, "row %{customdata[0]}, column %{customdata[1]}<br>gate %{z:.4g}", opacity
    )
    photo = go.Image(source=source, hoverinfo="skip", name="image")
    return _finish_image_figure(go.Figure([photo, cells]), title, height)
