"""The model registry: names → factories, and building a model for a library.

Two kinds of model:

- reconstruction (:data:`RECONSTRUCTION`): ``factory(angles, detector, size, *, option=...)``
  returns a :class:`keras.Model` from sinograms ``(batch, angles, detector)`` to images
  ``(batch, size, size)`` (functional, or for a GAN a model whose call is its generator);
- super-resolution (:data:`SUPER_RESOLUTION`): ``factory(scale, *, option=...)`` returns a
  fully convolutional model from low-resolution images ``(batch, h, w, 1)`` to
  ``(batch, h·scale, w·scale, 1)``; a guided model (``guided_sr`` with ``guide`` true) also
  takes the high-resolution absorption image ``(batch, h·scale, w·scale, 1)``.

A factory's keyword-only options, with their annotations, are the options a training config
may give; :func:`options_schema` turns them into a pydantic model so that a config is checked
(unknown option, wrong type, out of range) before anything is built.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from pathlib import Path

import keras
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from tomobench.models.automap import automap
from tomobench.models.cnn import cnn_reconstruct
from tomobench.models.dense import dense_reconstruct
from tomobench.models.edsr import edsr
from tomobench.models.errors import ConfigError
from tomobench.models.guided import guided_sr
from tomobench.models.pix2pix import gan_reconstruct
from tomobench.models.srgan import srgan
from tomobench.models.wdsr import wdsr_b

__all__ = [
    "MODELS",
    "RECONSTRUCTION",
    "SUPER_RESOLUTION",
    "build_model",
    "is_super_resolution",
    "library_shapes",
    "model_inputs",
    "options_schema",
    "validate_options",
]

RECONSTRUCTION: dict[str, Callable[..., keras.Model]] = {
    "cnn_reconstruct": cnn_reconstruct,
    "dense_reconstruct": dense_reconstruct,
    "automap": automap,
    "gan_reconstruct": gan_reconstruct,
}
"""Sinogram → image models and their factories."""

SUPER_RESOLUTION: dict[str, Callable[..., keras.Model]] = {
    "edsr": edsr,
    "wdsr_b": wdsr_b,
    "srgan": srgan,
    "guided_sr": guided_sr,
}
"""Low-resolution image → image models and their factories."""

MODELS: dict[str, Callable[..., keras.Model]] = {**RECONSTRUCTION, **SUPER_RESOLUTION}
"""Model names (as a training config gives them) and their factories."""

GUIDE = "absorption"
"""The library array a guided model takes as its second input."""


def is_super_resolution(name: str) -> bool:
    """Whether model ``name`` super-resolves images (rather than reconstructing sinograms)."""
    return name in SUPER_RESOLUTION


def model_inputs(name: str, options: Mapping, scale: int | None) -> tuple[str, ...]:
    """The library arrays model ``name`` (with these options) takes, in its inputs' order."""
    if not is_super_resolution(name):
        return ("sinograms",)
    guided = bool(options.get("guide", False)) if name == "guided_sr" else False
    return (f"images_x{scale}", GUIDE) if guided else (f"images_x{scale}",)


def _factory(name: str) -> Callable[..., keras.Model]:
    if name not in MODELS:
        msg = f"unknown model {name!r} (known: {', '.join(MODELS)})"
        raise ConfigError(msg)
    return MODELS[name]


@functools.cache
def options_schema(name: str) -> type[BaseModel]:
    """A pydantic model of the keyword-only options of model ``name`` (unknown keys are
    refused), built from the factory's signature and annotations."""
    factory = _factory(name)
    hints = typing.get_type_hints(factory, include_extras=True)
    fields = {
        parameter.name: (hints[parameter.name], parameter.default)
        for parameter in inspect.signature(factory).parameters.values()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    }
    return create_model(
        f"{name}_options", __config__=ConfigDict(extra="forbid", frozen=True), **fields
    )


def option_names(name: str) -> str:
    """The option names of model ``name``, comma-separated (for error messages)."""
    return ", ".join(options_schema(name).model_fields)


def validate_options(name: str, options: Mapping) -> dict:
    """The options of model ``name`` checked and with every default filled in.

    Raises :class:`pydantic.ValidationError` (its locations are option names).
    """
    return options_schema(name).model_validate(dict(options)).model_dump()


def library_shapes(library_or_shapes) -> tuple[int, int, int]:
    """``(angles, detector, size)`` of a library (an open :class:`~tomobench.Library` or a
    path to one) or of a ``(angles, detector, size)`` tuple or mapping."""
    if isinstance(library_or_shapes, Mapping):
        try:
            shapes = tuple(library_or_shapes[key] for key in ("angles", "detector", "size"))
        except KeyError as error:
            msg = f"shapes need angles, detector and size; {error.args[0]!r} is missing"
            raise ConfigError(msg) from None
    elif isinstance(library_or_shapes, (str, Path)):
        from tomobench.store import open_library

        with open_library(library_or_shapes) as library:
            return library_shapes(library)
    elif isinstance(library_or_shapes, (tuple, list)):
        shapes = tuple(library_or_shapes)
    else:
        return _shapes_of_library(library_or_shapes)
    if len(shapes) != 3 or not all(
        isinstance(value, int) and not isinstance(value, bool) and value > 0 for value in shapes
    ):
        msg = f"shapes must be three positive integers (angles, detector, size), got {shapes!r}"
        raise ConfigError(msg)
    return shapes


def _shapes_of_library(library) -> tuple[int, int, int]:
    splits = library.splits
    if not splits:
        msg = f"{library.path}: the library holds no split"
        raise ConfigError(msg)
    arrays = library.arrays(splits[0])
    sinograms, images = arrays["sinograms"].shape[1:], arrays["images"].shape[1:]
    if len(sinograms) != 2 or len(images) != 2 or images[0] != images[1]:
        msg = (
            f"{library.path}: models take single-channel sinograms (angles, detector) and "
            f"square images, but this library has sinograms {tuple(sinograms)} and images "
            f"{tuple(images)} per sample"
        )
        raise ConfigError(msg)
    return int(sinograms[0]), int(sinograms[1]), int(images[0])


def build_model(
    name: str, library_or_shapes=None, /, *, scale: int | None = None, **options
) -> keras.Model:
    """Model ``name`` of :data:`MODELS` with ``options`` passed to its factory after they are
    checked: a reconstruction model sized for a library (or for ``(angles, detector,
    size)``), a super-resolution model for the factor ``scale``.

    Raises :class:`~tomobench.models.errors.ConfigError` for an unknown model or option
    or an invalid option value, naming it.
    """
    factory = _factory(name)
    if is_super_resolution(name) and scale is None:
        msg = f"model {name} super-resolves: give its scale"
        raise ConfigError(msg)
    try:
        checked = validate_options(name, options)
    except ValidationError as error:
        problems = "; ".join(
            describe_error(item, prefix="options", allowed=lambda _: option_names(name))
            for item in error.errors()
        )
        msg = f"model {name}: {problems}"
        raise ConfigError(msg) from None
    if is_super_resolution(name):
        try:
            return factory(scale, **checked)
        except ValueError as error:  # a factor the model cannot make, options that clash
            msg = f"model {name}: {error}"
            raise ConfigError(msg) from None
    return factory(*library_shapes(library_or_shapes), **checked)


def describe_error(item: dict, *, prefix: str = "", allowed: Callable | None = None) -> str:
    """One pydantic error as ``field.path: what is wrong (got value)``."""
    parts = [prefix] if prefix else []
    for part in item["loc"]:
        if isinstance(part, int) and parts:
            parts[-1] += f"[{part}]"
        else:
            parts.append(str(part))
    from tomobench._text import QUOTE_LIMIT, quote, shorten

    path = shorten(".".join(parts) or "config", QUOTE_LIMIT)
    kind = item["type"]
    if kind == "extra_forbidden":
        names = allowed(tuple(item["loc"][:-1])) if allowed is not None else None
        return f"{path}: unknown field" + (f" (allowed here: {names})" if names else "")
    if kind == "missing":
        return f"{path}: field required"
    message = shorten(item["msg"].removeprefix("Value error, "), 3 * QUOTE_LIMIT)
    if "input" not in item or isinstance(item["input"], (dict, list)):
        return f"{path}: {message}"
    return f"{path}: {message} (got {quote(item['input'])})"
