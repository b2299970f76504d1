"""search.yaml: the declared search space of ``search.tune``, checked key by key at load.

The file's shape is a pydantic model (unknown keys, missing keys and wrong types are refused),
and every bound and choice is also run through the checks of params.yaml, so a range that
params.yaml would refuse (``train.dropout`` up to 1.5) fails here, before a trial is queued.
Errors raise ``ParamsError`` naming the file and the dotted key.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from digits.errors import ParamsError
from digits.params import parse_section, read_yaml

DEFAULT_PATH = Path("search.yaml")
# Metric files that hold test-set numbers: a search must never select on them.
TEST_METRIC_PREFIXES = ("eval.",)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatRange(_Strict):
    """A float drawn from ``[low, high]``, uniformly or (``log``) log-uniformly."""

    type: Literal["float"]
    low: StrictFloat | StrictInt
    high: StrictFloat | StrictInt
    log: StrictBool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        _check_bounds(self.low, self.high, self.log)
        return self

    def bounds(self) -> list[Any]:
        return [float(self.low), float(self.high)]


class IntRange(_Strict):
    """An integer drawn from ``[low, high]``, uniformly or (``log``) log-uniformly."""

    type: Literal["int"]
    low: StrictInt
    high: StrictInt
    log: StrictBool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        _check_bounds(self.low, self.high, self.log)
        return self

    def bounds(self) -> list[Any]:
        return [self.low, self.high]


class Choice(_Strict):
    """One of a list of values (TPE treats them as unordered categories)."""

    type: Literal["choice"]
    choices: list[StrictBool | StrictInt | StrictFloat | StrictStr] = Field(min_length=1)

    @model_validator(mode="after")
    def _distinct(self) -> Choice:
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"choices repeat a value: {self.choices}")
        return self

    def bounds(self) -> list[Any]:
        return list(self.choices)


Dimension = Annotated[FloatRange | IntRange | Choice, Field(discriminator="type")]


class SearchSpace(_Strict):
    """The whole file: which study, which objective, and the params a trial sets."""

    study: StrictStr = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    metric: StrictStr = Field(min_length=1)
    direction: Literal["maximize", "minimize"]
    params: dict[str, Dimension] = Field(min_length=1)

    @field_validator("metric")
    @classmethod
    def _validation_metric(cls, metric: str) -> str:
        if metric.startswith(TEST_METRIC_PREFIXES):
            raise ValueError(
                f"{metric!r} is a test-set metric; the objective must be a validation "
                "metric such as train.val_accuracy (selecting on the test set tunes on it)"
            )
        return metric


def _check_bounds(low: float, high: float, log: bool) -> None:
    if not low < high:
        raise ValueError(f"low ({low}) must be smaller than high ({high})")
    if log and low <= 0:
        raise ValueError(f"a log range needs low > 0, got {low}")


def load_space(
    path: str | os.PathLike[str] = DEFAULT_PATH,
    params_path: str | os.PathLike[str] = "params.yaml",
) -> SearchSpace:
    """Read and check the search space against the params.yaml it will change.

    Args:
        path: The search-space file (search.yaml).
        params_path: The params.yaml whose keys the space names.

    Returns:
        The frozen search space.

    Raises:
        ParamsError: The file is missing or not YAML, a key is unknown, missing or of the wrong
            type, a range is empty, or a bound or choice is a value params.yaml refuses.
    """
    raw = read_yaml(path)
    try:
        space = SearchSpace.model_validate(raw)
    except ValidationError as error:
        first = error.errors()[0]
        # A discriminated union puts the chosen type in the location: params.x.float.low.
        location = [str(part) for part in first["loc"] if part not in ("float", "int", "choice")]
        key = ".".join(location) or "(top level)"
        message = first["msg"].removeprefix("Value error, ")
        raise ParamsError(f"{path}: {key}: {message}") from None
    check_against_params(space, path, read_yaml(params_path))
    return space


def check_against_params(space: SearchSpace, path: Any, params: dict[str, Any]) -> None:
    """Run every bound and choice of ``space`` through the checks of params.yaml."""
    for key, dimension in space.params.items():
        section, _, name = key.partition(".")
        if section not in params or not isinstance(params[section], dict) or "." in name:
            raise ParamsError(f"{path}: params.{key}: not a key of params.yaml (use section.key)")
        if name not in params[section]:
            allowed = ", ".join(f"{section}.{known}" for known in params[section])
            raise ParamsError(
                f"{path}: params.{key}: not a key of params.yaml; allowed: {allowed}"
            )
        for value in dimension.bounds():
            trial = copy.deepcopy(params[section])
            trial[name] = value
            try:
                parse_section(section, trial)
            except ParamsError as error:
                raise ParamsError(f"{path}: params.{key}: {error}") from None


def suggest(space: SearchSpace, trial: Any) -> dict[str, Any]:
    """Draw one value per dimension from an Optuna trial: ``{"train.fc_size": 128, ...}``."""
    values: dict[str, Any] = {}
    for key, dimension in space.params.items():
        if isinstance(dimension, FloatRange):
            values[key] = trial.suggest_float(
                key, float(dimension.low), float(dimension.high), log=dimension.log
            )
        elif isinstance(dimension, IntRange):
            values[key] = trial.suggest_int(key, dimension.low, dimension.high, log=dimension.log)
        else:
            values[key] = trial.suggest_categorical(key, dimension.choices)
    return values
