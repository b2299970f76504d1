"""params.yaml, loaded once into frozen pydantic models and checked key by key.

Every section of params.yaml is one model below, checked by pydantic in strict mode: ``True``
is not an int, ``128.0`` is not an int, an int is accepted where a float is expected, NaN and
infinity are refused, and unknown keys are errors. What pydantic reports is turned into one
line naming the dotted key, the value and what is allowed, raised as ``ParamsError`` before a
stage reads any data.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from ruamel.yaml import YAML, YAMLError

from digits.errors import ParamsError

DEFAULT_PATH = Path("params.yaml")


def _list_to_tuple(value: Any) -> Any:
    """YAML has lists, the frozen models hold tuples; anything else is left for the check."""
    return tuple(value) if isinstance(value, list) else value


# Small ints that index images or channels; tuples so that a section stays hashable.
IndexList = Annotated[tuple[Annotated[int, Field(ge=0)], ...], BeforeValidator(_list_to_tuple)]


class Section(BaseModel):
    """What every section shares: strict types, no extra keys, frozen, finite numbers."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True, allow_inf_nan=False)


class DataParams(Section):
    """``data``: which dataset, and how the validation set is split off the training set."""

    dataset: Annotated[str, Field(min_length=1)]  # an entry of datasets.yaml
    validation_size: Annotated[int, Field(ge=1)]
    seed: Annotated[int, Field(ge=0)]


class TrainParams(Section):
    """``train``: the model, the optimizer and the training loop."""

    model: Literal["cnn", "mlp", "softmax"]
    conv1_filters: Annotated[int, Field(ge=1, le=1024)]
    conv2_filters: Annotated[int, Field(ge=1, le=1024)]
    kernel_size: Annotated[int, Field(ge=1, le=28)]
    padding: Literal["same", "valid"]
    fc_size: Annotated[int, Field(ge=1, le=65536)]
    dropout: Annotated[float, Field(ge=0.0, le=0.95)]
    augment_shift: Annotated[int, Field(ge=0, le=8)]
    optimizer: Literal["adam", "sgd"]
    momentum: Annotated[float, Field(ge=0.0, le=0.999)]
    learning_rate: Annotated[float, Field(gt=0.0, le=10.0)]
    lr_schedule: Literal["constant", "one_cycle"]
    batch_size: Annotated[int, Field(ge=1, le=65536)]
    steps: Annotated[int, Field(ge=1)]
    eval_every: Annotated[int, Field(ge=1)]
    patience: Annotated[int, Field(ge=0)]
    restore_best_weights: bool
    seed: Annotated[int, Field(ge=0)]
    precision: Literal["float32", "bfloat16"]


class EvaluateParams(Section):
    """``evaluate``: batched inference on the test set."""

    batch_size: Annotated[int, Field(ge=1, le=65536)]
    error_examples: Annotated[int, Field(ge=0, le=400)]


class VisualizeParams(Section):
    """``visualize``: which input channels of the filters and which test images to draw."""

    input_channels: IndexList
    images: Annotated[IndexList, Field(min_length=1)]


class TrackingParams(Section):
    """``tracking``: MLflow logging."""

    enabled: bool
    experiment: Annotated[str, Field(pattern=r"\S")]  # MLflow refuses a blank name
    register_model: str


SECTIONS: dict[str, type[Section]] = {
    "data": DataParams,
    "train": TrainParams,
    "evaluate": EvaluateParams,
    "visualize": VisualizeParams,
    "tracking": TrackingParams,
}


class Params(BaseModel):
    """The sections a stage asked for; the others stay ``None``."""

    model_config = ConfigDict(frozen=True)

    data: DataParams | None = None
    train: TrainParams | None = None
    evaluate: EvaluateParams | None = None
    visualize: VisualizeParams | None = None
    tracking: TrackingParams | None = None


def load_params(
    path: str | os.PathLike[str] = DEFAULT_PATH, sections: tuple[str, ...] = tuple(SECTIONS)
) -> Params:
    """Read params.yaml and build the requested sections.

    Args:
        path: The params file.
        sections: Names of the sections to build and check (a stage asks for those it
            depends on in dvc.yaml).

    Returns:
        The frozen params; sections not requested are ``None``.

    Raises:
        ParamsError: The file is missing or not YAML, or a key is unknown, missing, of the
            wrong type or out of range.
    """
    raw = read_yaml(path)
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ParamsError(
            f"{path}: unknown section {unknown[0]!r}; allowed sections: {', '.join(SECTIONS)}"
        )
    return Params(**{name: parse_section(name, raw.get(name)) for name in sections})


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse params.yaml with YAML 1.2 rules, as DVC does (so ``1e-4`` is a float)."""
    try:
        with Path(path).open() as stream:
            raw = YAML(typ="safe", pure=True).load(stream)
    except FileNotFoundError:
        raise ParamsError(f"{path} not found: run from the repository root") from None
    except YAMLError as error:
        raise ParamsError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(raw, dict):
        raise ParamsError(f"{path} must hold a mapping of sections, got {type(raw).__name__}")
    return raw


def parse_section(name: str, raw: Any) -> Section:
    """Build the model of section ``name`` from its raw mapping, checking every key."""
    if not isinstance(raw, dict):
        raise ParamsError(f"section {name!r} is missing from params.yaml or is not a mapping")
    cls = SECTIONS[name]
    try:
        return cls.model_validate(raw)
    except ValidationError as error:
        raise ParamsError(describe_error(name, cls, error.errors()[0])) from None


def replace(section: Section, **changes: Any) -> Section:
    """A copy of ``section`` with ``changes``, checked like params.yaml (unlike ``model_copy``)."""
    return type(section).model_validate({**section.model_dump(), **changes})


def describe_error(name: str, cls: type[Section], error: dict[str, Any]) -> str:
    """One line for the first thing pydantic found wrong in section ``name``."""
    field_name = str(error["loc"][0])
    key = f"{name}.{field_name}" + "".join(f"[{part}]" for part in error["loc"][1:])
    value, kind = error.get("input"), error["type"]
    if kind == "extra_forbidden":
        allowed = ", ".join(cls.model_fields)
        return f"unknown key {key}; allowed keys in {name!r}: {allowed}"
    if kind == "missing":
        return f"missing key {key} in params.yaml"
    if cls.model_fields[field_name].annotation is float and type(value) is int:
        value = float(value)  # what the stage would have used: -1 reads as -1.0
    if kind == "literal_error":
        return f"{key}: {value!r} is not allowed; choose one of {error['ctx']['expected']}"
    if kind in ("int_type", "float_type", "bool_type", "string_type", "tuple_type"):
        return f"{key}: expected {_EXPECTED[kind]}, got {value!r} ({type(value).__name__})"
    if kind == "finite_number" or (isinstance(value, float) and not math.isfinite(value)):
        return f"{key}: {value!r} is not a finite number; {_allowed(key, cls, error)}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        return f"{key}: {value!r} is out of range; {_allowed(key, cls, error)}"
    if kind == "too_short" and isinstance(value, tuple | list) and not value:
        return f"{key}: the list is empty; name at least one"
    if kind == "string_too_short" or (kind == "string_pattern_mismatch" and not value.strip()):
        return f"{key}: empty; give a non-blank value"
    return f"{key}: {value!r}: {error['msg']}"


_EXPECTED = {
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "tuple_type": "a list of integers",
}


def _allowed(key: str, cls: type[Section], error: dict[str, Any]) -> str:
    """``allowed: 0.0 < train.learning_rate <= 10.0``, from the field's declared bounds.

    For an item of a list (``visualize.images[2]``) the bound pydantic names is the one there is.
    """
    if len(error["loc"]) == 1:
        bounds = cls.model_fields[str(error["loc"][0])].metadata
    else:
        bounds = [SimpleNamespace(**error.get("ctx", {}))]
    lower = upper = ""
    for bound in bounds:
        if getattr(bound, "gt", None) is not None:
            lower = f"{bound.gt} < "
        if getattr(bound, "ge", None) is not None:
            lower = f"{bound.ge} <= "
        if getattr(bound, "lt", None) is not None:
            upper = f" < {bound.lt}"
        if getattr(bound, "le", None) is not None:
            upper = f" <= {bound.le}"
    return f"allowed: {lower}{key}{upper}"


def update_params_file(path: str | os.PathLike[str], updates: dict[str, dict[str, Any]]) -> None:
    """Merge ``{section: {key: value}}`` into a params file, keeping its comments and layout.

    The same edit ``dvc exp run -S section.key=value`` makes, for scripts and tests: a key that
    the file does not have is an error, so an edit can never silently do nothing.

    Raises:
        ParamsError: A section or key of ``updates`` is not in the file.
    """
    yaml = YAML()  # round-trip mode
    path = Path(path)
    raw = yaml.load(path.read_text())
    for section, values in updates.items():
        if section not in raw:
            raise ParamsError(f"{path}: no section {section!r} to update")
        for key, value in values.items():
            if key not in raw[section]:
                raise ParamsError(f"{path}: no key {section}.{key} to update")
            raw[section][key] = value
    with path.open("w") as stream:
        yaml.dump(raw, stream)
