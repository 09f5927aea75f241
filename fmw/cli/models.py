"""Opening the models a command was given (``--model SPEC``, repeatable, and a command's older
checkpoint arguments): each by ``fmw.io.load_model``, named for display, failures kept as messages
so that one bad SPEC does not stop the others."""

from __future__ import annotations

from fmw.errors import FMWError
from fmw.io.model_spec import ModelOptions, load_model, spec_name
from fmw.models import ModelHandle


def open_models(specs: list[str], options: ModelOptions) -> tuple[dict[str, ModelHandle], list[str]]:
    """The models that opened, by display name (the whole SPEC where two names clash), and one
    message per SPEC that did not."""
    models: dict[str, ModelHandle] = {}
    errors: list[str] = []
    for spec in specs:
        try:
            model = load_model(spec, options)
        except (FMWError, OSError) as error:
            errors.append(f"{spec}: {error}" if spec not in str(error) else str(error))
            continue
        name = spec_name(spec)
        models[name if name not in models else spec] = model
    return models, errors


def describe(model: ModelHandle) -> str:
    """What a model is, in a few words: its weighting for a checkpoint, its source and task otherwise."""
    if model.weighting is not None:
        return f"{model.weighting} weighting"
    postprocess = " (after its postprocess function)" if model.postprocess is not None else ""
    return f"{model.source}; task: {model.task}{postprocess}"
