"""Training configs: YAML validated into a :class:`TrainConfig`.

As for recipes, unknown keys are errors and every error names the field path
(``learning_rate``, ``options.dropout``) and what is allowed there. Paths in a config
(``library``, ``run``) are used as written: relative ones are relative to the folder the
command runs in, like a command-line argument.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tomobench.models.errors import ConfigError
from tomobench.models.registry import (
    MODELS,
    describe_error,
    is_super_resolution,
    option_names,
    validate_options,
)
from tomobench.recipe import read_yaml

__all__ = ["TrainConfig", "dump_config", "load_config", "parse_config"]

Split = Literal["train", "val", "test"]


class TrainConfig(BaseModel):
    """What ``tomobench train`` trains, on what, how, and where it writes the run."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description=f"model name: {', '.join(MODELS)}")
    options: dict[str, Any] = Field(
        default_factory=dict, description="keyword options of the model's factory"
    )
    library: str = Field(min_length=1, description="training library (*.h5 or *.zarr)")
    train_split: Split = Field("train", description="split to train on")
    validation_split: Split | None = Field(
        "val", description="split for validation loss and early stopping (null: none)"
    )
    loss: Literal["rmse", "mse", "mae"] = Field("rmse", description="per-image loss")
    optimiser: Literal["adam", "adamw", "rmsprop", "sgd"] = "adam"
    learning_rate: float = Field(0.00025, gt=0, le=1)
    batch_size: int = Field(32, ge=1, le=65536)
    epochs: int = Field(
        10,
        ge=1,
        le=1_000_000,
        description="epochs in all (a resumed run continues up to this many)",
    )
    early_stopping: int | None = Field(
        10,
        ge=1,
        description="stop after this many epochs without a lower monitored loss "
        "(validation loss, or training loss without validation); null: never",
    )
    seed: int = Field(0, ge=0, lt=2**32, description="seeds chunk order, shuffling, weights")
    shuffle_buffer: int = Field(1000, ge=1, description="samples permuted together")
    normalisation_chunks: int = Field(
        8, ge=1, description="training chunks the input mean and std are computed from"
    )
    scale: int | None = Field(
        None,
        ge=2,
        le=16,
        description="super-resolution models: the factor S; the model maps images_x{S} to "
        "images (null for reconstruction models)",
    )
    channels: Literal["each", "sum"] = Field(
        "each",
        description="super-resolution on hyperspectral libraries: train on every channel "
        "image ('each') or on the channel sums divided by the channel count ('sum'); "
        "prediction super-resolves every channel either way",
    )
    patch: int | None = Field(
        None,
        ge=2,
        le=4096,
        description="super-resolution: train on random low-resolution patches of this side "
        "(and their high-resolution squares); null: whole images",
    )
    samples_per_epoch: int | None = Field(
        None,
        ge=1,
        description="samples an epoch draws from the shuffled training split (null: all)",
    )
    validation_samples: int | None = Field(
        None, ge=1, description="validate on the first this many samples (null: all)"
    )
    run: str = Field(min_length=1, description="run folder to write (or resume)")

    @model_validator(mode="after")
    def _check_model(self) -> TrainConfig:
        if self.model not in MODELS:
            msg = f"model: unknown model {self.model!r} (known: {', '.join(MODELS)})"
            raise ValueError(msg)
        try:
            self.options = validate_options(self.model, self.options)
        except ValidationError as error:
            problems = "; ".join(
                describe_error(item, prefix="options", allowed=lambda _: option_names(self.model))
                for item in error.errors()
            )
            raise ValueError(problems) from None
        if is_super_resolution(self.model) and self.scale is None:
            msg = f"scale: model {self.model} super-resolves, give the factor (2, 3, 4, …)"
            raise ValueError(msg)
        if not is_super_resolution(self.model):
            for field in ("scale", "patch"):
                if getattr(self, field) is not None:
                    msg = f"{field}: model {self.model} reconstructs sinograms; remove {field}"
                    raise ValueError(msg)
        if self.validation_split == self.train_split:
            msg = f"validation_split: must differ from train_split ({self.train_split!r})"
            raise ValueError(msg)
        return self


def _allowed(loc: tuple) -> str | None:
    return ", ".join(TrainConfig.model_fields) if not loc else None


def parse_config(data: object, *, origin: str = "config") -> TrainConfig:
    """Validate a mapping (parsed YAML) into a :class:`TrainConfig`; a
    :class:`~tomobench.models.errors.ConfigError` names ``origin`` and each bad field."""
    if not isinstance(data, dict):
        msg = f"{origin}: a config must be a mapping of fields, got {type(data).__name__}"
        raise ConfigError(msg)
    try:
        return TrainConfig.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_describe(item) for item in error.errors())
        msg = f"{origin}: {problems}"
        raise ConfigError(msg) from None


def _describe(item: dict) -> str:
    if not item["loc"]:  # raised by _check_model, the message already names the field
        return item["msg"].removeprefix("Value error, ")
    return describe_error(item, allowed=_allowed)


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a training config from a YAML file."""
    path = Path(path)
    data = read_yaml(path, what="config", error=ConfigError)
    return parse_config(data, origin=f"config {path}")


def dump_config(config: TrainConfig) -> str:
    """The config as YAML, every default filled in (what a run folder's ``config.yaml``
    holds; :func:`load_config` reads it back to an equal config)."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
