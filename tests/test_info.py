"""Tests of ``python -m fmw info``: the numbers it prints for a checkpoint and in the overhead
table agree with the library's counts and with a count by hand; bad paths exit 2 in one line."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from fmw._version import __version__
from fmw.cli.info import main
from fmw.layers import WEIGHTING_LAYERS
from fmw.models import NetConfig, build_model, count_multiply_adds, count_parameters

SMALL: dict[str, Any] = {"stem_width": 8, "widths": (8, 16, 32)}  # NetConfig overrides


def number(text: str) -> int:
    """The integer a cell starts with: "+7,276 (1.107%)" -> 7276."""
    return int(text.split()[0].replace(",", "").replace("+", ""))


def gated_values(config: NetConfig, size: int = 32) -> int:
    """Values entering the weighting sites of one image: the whitening conv leaves size - 1
    pixels a side, then block i has widths[i] maps of (size - 1) // 2^(i+1)."""
    return sum(width * ((size - 1) >> (i + 1)) ** 2 for i, width in enumerate(config.widths))


def field(output: str, label: str) -> str:
    match = re.search(rf"^{re.escape(label)}\s{{2,}}(.*)$", output, re.MULTILINE)
    assert match, f"no {label!r} line in:\n{output}"
    return match.group(1)


def test_checkpoint_info_prints_metadata_and_counts(checkpoint_factory, capsys) -> None:
    path = checkpoint_factory("cbam", **SMALL)
    assert main([str(path)]) == 0
    output = capsys.readouterr().out
    model, plain = build_model(weighting="cbam", **SMALL), build_model(weighting="none", **SMALL)

    assert field(output, "checkpoint") == str(path)
    assert field(output, "weighting") == "cbam"
    assert field(output, "architecture") == model.config.to_json()
    assert field(output, "classes (10)").startswith("airplane, automobile, bird")
    assert field(output, "input size") == "32x32 (height x width)"
    assert field(output, "normalisation") == "mean 0.4914, 0.4822, 0.4465; std 0.247, 0.2435, 0.2616"
    assert field(output, "metrics") == '{"note": "random weights made by a test"}'
    assert field(output, "recipe") == '{"seed": 0}'
    assert field(output, "code version").startswith(__version__)
    assert field(output, "format version") == "1"

    parameters = re.fullmatch(r"([\d,]+) \(([+\d,]+) \(([\d.]+)%\) over weighting none\)", field(output, "parameters"))
    assert parameters, field(output, "parameters")
    assert number(parameters[1]) == count_parameters(model)
    assert number(parameters[2]) == count_parameters(model) - count_parameters(plain)
    multiply_adds = re.fullmatch(r"([\d,]+) per 32x32 image \(([+\d,]+) .*", field(output, "multiply-adds"))
    assert multiply_adds, field(output, "multiply-adds")
    assert number(multiply_adds[1]) == count_multiply_adds(model)
    assert number(multiply_adds[2]) == count_multiply_adds(model) - count_multiply_adds(plain)
    gates = field(output, "gate multiplications")
    assert gates == f"{2 * gated_values(model.config):,} per 32x32 image", "CBAM gates every value twice"
    assert "FlopCounterMode, which counts only convolutions, linear layers and matmuls" in output


def overhead_rows(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in WEIGHTING_LAYERS:
            rows[cells[0]] = cells[1:]
    return rows


def test_overhead_table_matches_the_library_counts(capsys) -> None:
    assert main(["--overhead"]) == 0
    output = capsys.readouterr().out
    assert "| weighting | parameters | parameters over none | multiply-adds | multiply-adds over none" in output
    assert "counts only convolutions, linear layers and matmuls" in output
    rows = overhead_rows(output)
    assert list(rows) == list(WEIGHTING_LAYERS)

    base = build_model()
    base_parameters, base_multiply_adds = count_parameters(base), count_multiply_adds(base)
    per_stage_gate = gated_values(NetConfig())
    assert per_stage_gate == 64 * 15 * 15 + 128 * 7 * 7 + 128 * 3 * 3 == 21_824
    for kind, (parameters, parameter_overhead, multiply_adds, multiply_add_overhead, gates) in rows.items():
        model = build_model(weighting=kind)
        assert number(parameters) == count_parameters(model), kind
        assert number(multiply_adds) == count_multiply_adds(model), kind
        extra_parameters = count_parameters(model) - base_parameters
        extra_multiply_adds = count_multiply_adds(model) - base_multiply_adds
        assert parameter_overhead == f"{extra_parameters:+,} ({100 * extra_parameters / base_parameters:.3f}%)"
        assert (
            multiply_add_overhead == f"{extra_multiply_adds:+,} ({100 * extra_multiply_adds / base_multiply_adds:.3f}%)"
        )
        stages = {"none": 0, "cbam": 2, "coord": 2}.get(kind, 1)  # coordinate attention multiplies twice
        assert number(gates) == stages * per_stage_gate, kind
    # by hand: SE on widths 64, 128, 128 uses hidden widths max(C // 16, 8) = 8, 8, 8
    assert number(rows["channel"][1]) == sum(2 * c * h + h + c for c, h in ((64, 8), (128, 8), (128, 8)))
    assert number(rows["scale"][1]) == 64 + 128 + 128


def test_a_missing_checkpoint_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    assert main([str(tmp_path / "absent.safetensors")]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("fmw info: ") and "no such file" in captured.err


def test_a_file_that_is_not_a_checkpoint_exits_2_with_one_line(tmp_path: Path, capsys) -> None:
    path = tmp_path / "notes.safetensors"
    path.write_text("not a checkpoint")
    assert main([str(path)]) == 2
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1
    assert "not a valid safetensors file" in captured.err and "Traceback" not in captured.err


@pytest.mark.parametrize("argv", [[], ["x.safetensors", "--overhead"]])
def test_exactly_one_of_checkpoint_or_overhead_is_required(argv: list[str], capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert "give either a CHECKPOINT or --overhead" in capsys.readouterr().err
