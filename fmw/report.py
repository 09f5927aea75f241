"""``python -m fmw report``: one self-contained HTML page for images x checkpoints with the dashboard's
figures: top-5, every site's maps before and after with its gates, and an input-attribution overlay.

Images are decoded by ``fmw.decode`` (content-sniffed, size-limited). A file that cannot be read or
decoded, or a checkpoint that cannot be loaded, gets an error line in the page and on stderr while
everything else is still reported. Exit status: 0 when everything was reported; 1 when the page was
written but something failed; 2 when no page was written (bad arguments, no checkpoint could be
loaded, or the output cannot be written).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from fmw.analysis import analyse_image, prepare_input
from fmw.attribution import INPUT_METHODS, attribute_input
from fmw.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint
from fmw.decode import DecodedImage, DecodeError, decode_image
from fmw.device import select_device
from fmw.export import Section, write_page
from fmw.figures import attribution_overlay_figure, predictions_figure
from fmw.viz import site_column_figure

__all__ = ["NO_ATTRIBUTION", "checkpoint_sections", "report_sections", "main"]

NO_ATTRIBUTION = "none"


def checkpoint_sections(
    name: str,
    loaded: LoadedCheckpoint,
    image: DecodedImage,
    *,
    attribution: str = "integrated_gradients",
    n_steps: int = 32,
    resolution: int | None = None,
) -> list[Section]:
    """One checkpoint on one image: a section with the top-5 and the attribution overlay (for the
    predicted class; ``attribution="none"`` leaves it out), then one section per weighting site
    with the Compare view's figure: its maps before and after and its gate(s)."""
    analysis = analyse_image(loaded, image.rgb, resolution=resolution, name=name)
    top = analysis.predictions[0]
    figures = [
        predictions_figure(
            [p.class_name for p in analysis.predictions], [p.probability for p in analysis.predictions], title="top-5"
        )
    ]
    if attribution != NO_ATTRIBUTION:
        inputs = prepare_input(analysis.crop, loaded.metadata, analysis.resolution)
        result = attribute_input(loaded.model, inputs, attribution, target=top.index, n_steps=n_steps)
        title = f"{attribution.replace('_', ' ')} for {top.class_name}"
        figures.append(attribution_overlay_figure(analysis.crop, result.maps[0], title=title))
    height, width = analysis.resolution
    sections = [
        Section(
            f"{name}: {top.class_name} ({top.probability:.1%})",
            figures,
            notes=[f"{loaded.metadata.weighting} weighting, analysed at {height}x{width} px"],
            level=3,
        )
    ]
    for site in analysis.sites:
        figure = site_column_figure(
            site.before, site.after, site.channel_gate, site.spatial_gate, title=f"{site.name}: before, after, gates"
        )
        _, map_height, map_width = site.before.shape
        note = f"{site.kind}, {site.channels} maps of {map_height}x{map_width}"
        if not site.gates:
            note += "; no gate: the site passes its input through unchanged"
        sections.append(Section(f"{name} · {site.name}", [figure], notes=[note], level=4))
    return sections


def report_sections(
    images: Sequence[tuple[str, bytes]],
    checkpoints: Mapping[str, LoadedCheckpoint],
    **options,
) -> tuple[list[Section], list[str]]:
    """Sections for every (name, file bytes) image and every named checkpoint, and the error
    messages of what failed (each also appears in its image's section). ``options`` go to
    ``checkpoint_sections``."""
    sections: list[Section] = []
    errors: list[str] = []
    for image_name, data in images:
        heading = Section(f"Image {image_name}")
        sections.append(heading)
        try:
            image = decode_image(data, image_name)
        except DecodeError as error:
            heading.errors.append(str(error))
            errors.append(str(error))
            continue
        width, height = image.source_size
        heading.notes.append(f"{image.source_format}, {width}x{height} px, sha256 {image.digest[:12]}")
        for name, loaded in checkpoints.items():
            try:
                sections += checkpoint_sections(name, loaded, image, **options)
            except (ValueError, RuntimeError) as error:
                message = f"{image_name} with {name}: {error}"
                heading.errors.append(message)
                errors.append(message)
    return sections, errors


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fmw report",
        description=__doc__.split("\n")[0],
        epilog="exit status: 0 all reported, 1 page written with errors in it, 2 no page written",
    )
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE")
    parser.add_argument("--checkpoint", type=Path, action="append", required=True, help="repeat for several")
    parser.add_argument("--out", type=Path, required=True, help="the HTML file to write")
    parser.add_argument("--attribution", default="integrated_gradients", choices=[*INPUT_METHODS, NO_ATTRIBUTION])
    parser.add_argument("--steps", type=int, default=32, help="integration steps for integrated gradients")
    parser.add_argument("--resolution", type=int, default=None, help="analysis size in px (default: the checkpoint's)")
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    try:
        if args.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {args.steps}")
        device = select_device(args.device)
    except ValueError as error:
        print(f"fmw report: {error}", file=sys.stderr)
        return 2
    checkpoints: dict[str, LoadedCheckpoint] = {}
    loading = Section("Checkpoints")
    for path in args.checkpoint:
        try:
            checkpoints[path.stem if path.stem not in checkpoints else str(path)] = load_checkpoint(path, device)
        except CheckpointError as error:
            loading.errors.append(str(error))
    for message in loading.errors:
        print(f"fmw report: {message}", file=sys.stderr)
    if not checkpoints:
        print("fmw report: no checkpoint could be loaded; no report written", file=sys.stderr)
        return 2
    loading.notes.append(", ".join(f"{name} ({loaded.metadata.weighting})" for name, loaded in checkpoints.items()))
    sections: list[Section] = []
    errors: list[str] = []
    for path in args.images:
        try:
            data = path.read_bytes()
        except OSError as error:
            message = f"{path}: cannot read the file ({error.strerror or error})"
            sections.append(Section(f"Image {path}", errors=[message]))
            errors.append(message)
            continue
        image_sections, image_errors = report_sections(
            [(str(path), data)], checkpoints, attribution=args.attribution, n_steps=args.steps, resolution=args.resolution
        )
        sections += image_sections
        errors += image_errors
    for message in errors:
        print(f"fmw report: {message}", file=sys.stderr)
    try:
        write_page(args.out, "fmw report", [loading, *sections])
    except OSError as error:
        print(f"fmw report: cannot write {args.out}: {error}", file=sys.stderr)
        return 2
    failures = len(errors) + len(loading.errors)
    print(f"wrote {args.out}: {len(args.images)} image(s) x {len(checkpoints)} checkpoint(s), {failures} error(s)")
    return 1 if failures else 0
