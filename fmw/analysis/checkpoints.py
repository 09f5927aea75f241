"""The fmw checkpoints in a directory, in the order the dashboard and the reports list them."""

from __future__ import annotations

from pathlib import Path

from fmw.layers import WEIGHTING_LAYERS

__all__ = ["list_checkpoints"]


def list_checkpoints(directory: Path) -> list[Path]:
    """The ``.safetensors`` files in ``directory``: the family's kinds in display order, then others.

    Args:
        directory: where to look (not recursively); a missing directory has none.

    Returns:
        The files, ``none``, ``scale``, ... first (``fmw.layers.WEIGHTING_LAYERS``' order), then
        the rest by name.

    Examples:
        >>> from fmw.settings import SHIPPED_CHECKPOINTS
        >>> [path.stem for path in list_checkpoints(SHIPPED_CHECKPOINTS)]
        ['none', 'scale', 'spatial', 'channel', 'cbam', 'eca', 'coord', 'simam']
    """
    if not directory.is_dir():
        return []
    rank = {kind: position for position, kind in enumerate(WEIGHTING_LAYERS)}
    files = [path for path in directory.glob("*.safetensors") if path.is_file()]
    return sorted(files, key=lambda path: (rank.get(path.stem, len(rank)), path.stem))
