"""Recipes: the declarative description of a library, validated into a :class:`Recipe`.

A recipe is YAML. Unknown keys are errors, and every error names the field path
(``geometry.angles``, ``noise[0].photons``) and what is allowed there.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import stat
from importlib import resources
from pathlib import Path
from typing import Annotated, Literal, Union, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from tomobench._text import QUOTE_LIMIT, file_kind, quote, shorten
from tomobench.errors import RecipeError

SPLITS = ("train", "val", "test")
OVERSAMPLED_SOURCES = ("shapes", "particles")
"""Sources that render their ground truth finer than its pixels (``geometry.oversample``)."""
SPLIT_IDS = {name: index for index, name in enumerate(SPLITS)}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_truth_value_for_a_number(cls, data):
        """YAML's true/false is no number: pydantic would read ``angles: true`` as 1 angle.
        Such a value goes on as the text ``true``, which the field then refuses, by name."""
        if not isinstance(data, dict):
            return data
        numbers = {}
        for name, value in data.items():
            field = cls.model_fields.get(name) if isinstance(value, bool) else None
            kinds = (get_args(field.annotation) or (field.annotation,)) if field else ()
            if bool not in kinds and {int, float} & set(kinds):
                numbers[name] = str(value).lower()
        return {**data, **numbers}


class _FillsTheSquare(_Strict):
    """A source whose images fill the square (natural images, reconstructions)."""

    @property
    def support_radius(self) -> float:
        """Mass reaches the square's corners: (size - 1)/√2 pixels from the axis."""
        return (self.size - 1) / math.sqrt(2)


class _InsideTheCircle(_Strict):
    """A source whose images are zero outside the circle inscribed in the square."""

    @property
    def support_radius(self) -> float:
        """Mass lies within size/2 pixels of the axis."""
        return self.size / 2


class ShapesSource(_Strict):
    """Random shapes (rectangles, circles, triangles, ellipses), drawn by tomobench's fast
    generator or by ``skimage.draw.random_shapes``, then optionally masked, noised and
    smoothed."""

    kind: Literal["shapes"]
    size: int = Field(ge=8, le=4096, description="ground-truth image is size × size pixels")
    min_shapes: int = Field(1, ge=1, description="fewest shapes per image")
    max_shapes: int = Field(10, ge=1, description="most shapes per image")
    min_shape_size: int = Field(2, ge=2, description="smallest shape extent in pixels")
    max_shape_size: int | None = Field(
        None, ge=2, description="largest shape extent in pixels (default: size // 2)"
    )
    intensity: tuple[float, float] = Field(
        (0.1, 1.0), description="range of the value of a shape, within [0, 1]; background is 0"
    )
    shape: Literal["rectangle", "circle", "triangle", "ellipse"] | None = Field(
        None, description="draw only this shape family (default: all four, at random)"
    )
    generator: Literal["fast", "skimage"] = Field(
        "fast",
        description="fast: tomobench's generator of the same family of shapes; skimage: "
        "skimage.draw.random_shapes, as the 2020 project",
    )
    allow_overlap: bool = Field(
        True, description="later shapes may cover earlier ones (skimage generator only)"
    )
    background: float = Field(
        0.0,
        ge=0,
        le=1,
        description="value where no shape lies, before normalisation (the 2020 generator: "
        "1/254, skimage's background grey 255 set to 1)",
    )
    circular_mask: bool = Field(False, description="zero outside a circle (see mask_radius)")
    mask_radius: float | None = Field(
        None,
        gt=0,
        le=4096,
        description="radius of the circular mask in pixels, pixel centres at most this far "
        "from the mask's centre are kept (default: size/2, the inscribed circle; the 2020 "
        "generator: size/2 - 5)",
    )
    mask_center: Literal["axis", "pixel"] = Field(
        "axis",
        description="axis: the mask is centred on the rotation axis, (size-1)/2; pixel: on "
        "the pixel (size//2, size//2), half a pixel off the axis, as the 2020 generator",
    )
    image_noise_counts: float | None = Field(
        None,
        gt=0,
        le=1e15,
        description="Poisson noise on the image at this many counts for value 1 "
        "(the 2020 generator used 256)",
    )
    smooth_sigma: float = Field(0.0, ge=0, description="Gaussian smoothing σ in pixels")
    normalize: Union[bool, Literal["each-step"]] = Field(
        False,
        description="true: divide each image by its maximum at the end; each-step: after "
        "drawing, masking, noise and smoothing, each time (the 2020 generator)",
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> ShapesSource:
        if self.min_shapes > self.max_shapes:
            msg = f"min_shapes ({self.min_shapes}) exceeds max_shapes ({self.max_shapes})"
            raise ValueError(msg)
        largest = self.largest_shape
        if not self.min_shape_size <= largest <= self.size:
            msg = (
                f"shape sizes must satisfy min_shape_size <= max_shape_size <= size, "
                f"got {self.min_shape_size}, {largest}, {self.size}"
            )
            raise ValueError(msg)
        low, high = self.intensity
        if not 0.0 <= low <= high <= 1.0:
            msg = f"intensity must satisfy 0 <= low <= high <= 1, got {list(self.intensity)}"
            raise ValueError(msg)
        if not self.allow_overlap and self.generator != "skimage":
            msg = "allow_overlap: false needs generator: skimage (the fast generator overlaps)"
            raise ValueError(msg)
        if self.mask_radius is not None and not self.circular_mask:
            msg = "mask_radius needs circular_mask: true"
            raise ValueError(msg)
        return self

    @property
    def largest_shape(self) -> int:
        return self.max_shape_size if self.max_shape_size is not None else self.size // 2

    @property
    def support_radius(self) -> float:
        """How far from the rotation axis (in pixels) a pixel centre may hold mass: the
        mask's reach (or the square's corner), widened by the smoothing's kernel."""
        corner = (self.size - 1) / math.sqrt(2)
        if not self.circular_mask:
            return corner
        radius = self.size / 2 if self.mask_radius is None else self.mask_radius
        if self.mask_center == "pixel":
            radius += math.sqrt(2) * abs(self.size // 2 - (self.size - 1) / 2)
        if self.smooth_sigma > 0:  # scipy's Gaussian kernel reaches int(4σ + 0.5) pixels
            radius += int(4 * self.smooth_sigma + 0.5)
        return min(radius, corner)


class DIV2KSource(_FillsTheSquare):
    """DIV2K natural images: crops of the HR images, grey, resized to ``size``."""

    kind: Literal["div2k"]
    size: int = Field(ge=8, le=2048, description="ground-truth image is size × size pixels")
    train_dataset: str = Field(
        "DIV2K_train_HR.zip", description="registry entry of the images for train and val"
    )
    test_dataset: str = Field(
        "DIV2K_valid_HR.zip", description="registry entry of the images for test"
    )
    val_images: int = Field(80, ge=0, description="the last N training images feed val")
    crop: int | None = Field(
        256, ge=8, description="side of the random square crop (null: the central square)"
    )
    crops_per_image: int = Field(1, ge=1, description="samples drawn from each image")

    @model_validator(mode="after")
    def _check_crop(self) -> DIV2KSource:
        if self.crop is not None and self.crop < self.size:
            msg = f"crop ({self.crop}) must be at least the size ({self.size})"
            raise ValueError(msg)
        return self


class ExperimentalSource(_FillsTheSquare):
    """Ground truth reconstructed from measured sinograms (report §6.1): scaled per angle,
    background removed, centred, FBP, negatives to zero, normalised."""

    kind: Literal["experimental"]
    size: int = Field(ge=8, le=4096, description="ground-truth image is size × size pixels")
    dataset: str | None = Field(None, description="registry entry holding the sinograms")
    path: str | None = Field(None, description="or a local file (.h5, .npz, .npy, .tif)")
    slices: dict[Literal["train", "val", "test"], tuple[str, ...]] = Field(
        description="per split, the sinograms it draws from: dataset keys (HDF5, NPZ), or "
        "'all' / 'start:stop' slice ranges of a single-array file (NPY, TIFF)"
    )
    axes: str = Field(
        "AD",
        pattern=r"^[ADSC]{2,4}$",
        description="axis order of each stored array: A angle, D detector, and optionally S "
        "slice and C channel (an XRD-CT stack: a hyperspectral library)",
    )
    channels: int | None = Field(
        None, ge=1, description="channels of an XRD-CT stack (axes with C): checked on reading"
    )
    angle_range: float = Field(
        180.0, gt=0, le=360, description="degrees the projections span, endpoint excluded"
    )
    scale: bool = Field(True, description="equal summed intensity for every projection")
    background_edge: int = Field(
        0, ge=0, description="detector pixels at each edge that see only air (0: keep)"
    )
    center: bool = Field(True, description="find and correct the centre of rotation")
    filter: Literal["ram-lak", "shepp-logan", "cosine", "hamming", "hann"] = "ram-lak"
    crop: int | None = Field(None, ge=8, description="side of a random square crop")
    augment: bool = Field(True, description="random quarter turns and flips")

    @model_validator(mode="after")
    def _check_origin(self) -> ExperimentalSource:
        if "A" not in self.axes or "D" not in self.axes or len(set(self.axes)) < len(self.axes):
            msg = f"axes {self.axes!r} must name A and D, and each axis once"
            raise ValueError(msg)
        if ("C" in self.axes) != (self.channels is not None):
            msg = "give channels exactly when axes has a channel axis (C)"
            raise ValueError(msg)
        if (self.dataset is None) == (self.path is None):
            msg = "give exactly one of dataset (a registry entry) and path (a local file)"
            raise ValueError(msg)
        named = [item for items in self.slices.values() for item in items]
        if len(set(named)) != len(named):
            msg = "a sinogram is named in two splits: splits must not share slices"
            raise ValueError(msg)
        ranges = [
            (split, item, _slice_range(item))
            for split, items in self.slices.items()
            for item in items
        ]
        for position, (split, item, (start, stop)) in enumerate(ranges):
            for other_split, other, (low, high) in ranges[position + 1 :]:
                if other_split != split and max(start, low) < min(stop, high):
                    msg = (
                        f"slices {item!r} of {split} and {other!r} of {other_split} overlap: "
                        "splits must not share sinograms"
                    )
                    raise ValueError(msg)
        return self


def _slice_range(item: str) -> tuple[float, float]:
    """The sinograms ``[start, stop)`` that a slice item of a single-array file names:
    everything for ``all``, nothing known (an empty range) for a dataset key."""
    if item == "all":
        return (0, float("inf"))
    start, colon, stop = item.partition(":")
    if colon and start.isdigit() and stop.isdigit():
        return (int(start), int(stop))
    return (0, 0)


class PhaseDefinition(_Strict):
    """A phase given in full (see :class:`tomobench.xrd.Phase`): a lattice and reflections
    (h, k, l, relative intensity), or d-spacings (d in Å, relative intensity), the
    intensities as measured at ``card_wavelength``."""

    name: str = Field(min_length=1, max_length=100, description="the phase's name")
    crystal_system: Literal["cubic", "tetragonal", "hexagonal"] = "cubic"
    a: float | None = Field(None, gt=0, description="lattice parameter a in Å")
    c: float | None = Field(None, gt=0, description="lattice parameter c in Å")
    reflections: tuple[tuple[int, int, int, float], ...] = Field(
        (), description="(h, k, l, relative intensity) of each reflection"
    )
    d_list: tuple[tuple[float, float], ...] = Field(
        (), description="or (d in Å, relative intensity) of each reflection"
    )
    card_wavelength: float = Field(
        1.5406,  # Cu Kα: tomobench.xrd.CU_KALPHA_ANGSTROM
        gt=0,
        description="wavelength in Å at which the intensities were measured (Cu Kα); they are "
        "carried to the recipe's energy by the Lorentz-polarisation factor",
    )

    @model_validator(mode="after")
    def _check_phase(self) -> PhaseDefinition:
        self.to_phase()  # its checks raise ValueError, naming the phase
        return self

    def to_phase(self):
        from tomobench.xrd import Phase

        return Phase(**self.model_dump())


class AbsorptionSpec(_Strict):
    """The absorption (micro-CT) image of each slice, beside its XRD-CT cube: the linear
    attenuation coefficient in every pixel, Σ_phase fraction × μ_phase, in cm⁻¹, from the same
    phase-fraction maps that made the cube (the second input of a dual-input network)."""

    coefficients: dict[str, Annotated[float, Field(ge=0)]] = Field(
        description="linear attenuation coefficient μ of each phase in cm⁻¹, at the micro-CT "
        "energy, keyed by phase name: every phase of the source, and no other"
    )
    pixel_size_um: float = Field(
        gt=0, le=1e6, description="side of a pixel in µm (μ × pixel = optical depth per pixel)"
    )
    noise: float = Field(
        0.0,
        ge=0,
        le=1e3,
        description="standard deviation of Gaussian noise added to the image, as a fraction "
        "of the largest coefficient",
    )

    def __hash__(self) -> int:  # a frozen model with a mapping: hashed as sorted pairs
        return hash((tuple(sorted(self.coefficients.items())), self.pixel_size_um, self.noise))

    @field_validator("coefficients", mode="before")
    @classmethod
    def _no_truth_value_for_a_coefficient(cls, value):
        """YAML's true/false is no coefficient: it goes on as text, refused by name."""
        if isinstance(value, dict):
            return {k: str(v).lower() if isinstance(v, bool) else v for k, v in value.items()}
        return value


class XRDCTSource(_InsideTheCircle):
    """Simulated XRD-CT: every pixel holds a powder diffraction pattern over a 2θ axis, made
    from phase-fraction maps and per-pixel crystallite size and strain (see docs/xrd.md)."""

    kind: Literal["xrdct"]
    size: int = Field(ge=8, le=1024, description="slices are size × size pixels")
    phases: tuple[str | PhaseDefinition, ...] = Field(
        ("gamma-Al2O3", "Ni", "CeO2"),
        min_length=1,
        description="names from tomobench.xrd.PHASES, or phases given in full; with "
        "'particles' the first is the support",
    )
    phantom: Literal["particles", "shapes", "masks"] = Field(
        "particles",
        description="catalyst bodies (support with cores/shells), random shapes, or the "
        "fractions of a masks file",
    )
    masks: str | None = Field(
        None,
        description="with phantom 'masks': a .npy file of (phases, size, size) fractions in "
        "[0, 1], the phase maps of every sample",
    )
    energy_kev: float = Field(60.0, gt=1, le=200, description="X-ray energy")
    two_theta: tuple[float, float] = Field(
        (1.0, 12.0), description="2θ range in degrees, both ends included"
    )
    channels: int = Field(400, ge=2, le=10_000, description="points of the 2θ axis")
    size_range_nm: tuple[float, float] = Field(
        (5.0, 30.0), description="crystallite sizes drawn in this range (Scherrer widths)"
    )
    strain_range: tuple[float, float] = Field(
        (0.0, 0.003), description="relative lattice expansion drawn in this range"
    )
    correlation_px: float | None = Field(
        None, ge=0, description="smoothness of the size and strain fields (default size/8)"
    )
    background: float = Field(
        0.05, ge=0, description="amorphous hump, as a fraction of the strongest peak"
    )
    instrument_fwhm_deg: float = Field(0.1, ge=0, description="instrumental peak width")
    absorption: AbsorptionSpec | None = Field(
        None,
        description="also store the absorption (micro-CT) image of each slice, from the same "
        "phase maps: the linear attenuation coefficient in cm⁻¹ (null: none)",
    )

    @field_validator("absorption")
    @classmethod
    def _check_absorption_phases(cls, absorption, info: ValidationInfo):
        """A coefficient for every phase of the source, and for no other name."""
        from tomobench.xrd import PHASES

        phases = info.data.get("phases")  # absent when the phases themselves were refused
        if absorption is None or phases is None:
            return absorption
        if any(isinstance(p, str) and p not in PHASES for p in phases):
            return absorption  # the unknown phase is what _check_phases names
        names = [p if isinstance(p, str) else p.name for p in phases]
        missing = [name for name in names if name not in absorption.coefficients]
        unknown = [name for name in absorption.coefficients if name not in names]
        if missing or unknown:
            problems = [f"missing {', '.join(map(quote, missing))}"] if missing else []
            if unknown:
                problems.append(f"not a phase of the source: {', '.join(map(quote, unknown))}")
            msg = (
                "coefficients must give every phase of the source and no other: "
                f"{'; '.join(problems)} (the phases: {', '.join(names)})"
            )
            raise ValueError(msg)
        return absorption

    @model_serializer(mode="wrap")
    def _leave_out_no_absorption(self, handler):
        """``absorption`` appears in a dump only when given: a recipe without it dumps (and
        hashes) as it did before the field existed, so its libraries keep their identity."""
        data = handler(self)
        if self.absorption is None:
            data.pop("absorption", None)
        return data

    @model_validator(mode="after")
    def _check_phases(self) -> XRDCTSource:
        from tomobench.xrd import PHASES

        unknown = [name for name in self.phases if isinstance(name, str) and name not in PHASES]
        if unknown:
            msg = (
                f"unknown phase {unknown[0]!r} (known: {', '.join(PHASES)}; or give a phase "
                "in full: name, crystal_system, a, c, reflections or d_list)"
            )
            raise ValueError(msg)
        names = self.phase_names
        if len(set(names)) != len(names):
            msg = f"phases repeat a name: {list(names)}"
            raise ValueError(msg)
        if (self.phantom == "masks") != (self.masks is not None):
            msg = "give masks (a .npy file) exactly when phantom is 'masks'"
            raise ValueError(msg)
        low, high = self.two_theta
        if not 0 < low < high < 180:
            msg = f"two_theta must satisfy 0 < low < high < 180, got {list(self.two_theta)}"
            raise ValueError(msg)
        for name in ("size_range_nm", "strain_range"):
            low, high = getattr(self, name)
            if low > high:
                msg = f"{name} must be (low, high) with low <= high, got {[low, high]}"
                raise ValueError(msg)
        if self.size_range_nm[0] <= 0:
            msg = "size_range_nm must be positive"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _check_peak_sampling(self) -> XRDCTSource:
        """The narrowest peak (largest crystallites, lowest angle) spans at least 3 channels."""
        from tomobench import xrd
        from tomobench.xrd.patterns import MIN_PEAK_CHANNELS

        phases = [xrd.PHASES[p] if isinstance(p, str) else p.to_phase() for p in self.phases]
        largest = self.size_range_nm[1]
        instrument = self.instrument_fwhm_deg
        fwhm = xrd.narrowest_fwhm_deg(
            phases, self.two_theta, wavelength=xrd.wavelength_from_energy(self.energy_kev),
            crystallite_size_nm=largest, instrument_fwhm_deg=instrument,
        )
        span = self.two_theta[1] - self.two_theta[0]
        step = span / (self.channels - 1)
        if fwhm >= MIN_PEAK_CHANNELS * step * (1 - 1e-9):
            return self
        # what would do, each alone: need > fwhm >= instrument, and Scherrer's β ∝ 1 / size
        need = MIN_PEAK_CHANNELS * step
        scherrer = math.sqrt(fwhm**2 - instrument**2)  # of the largest crystallites
        channels = math.ceil(MIN_PEAK_CHANNELS * span / fwhm) + 1
        width = math.floor(100 * fwhm / MIN_PEAK_CHANNELS * (self.channels - 1)) / 100
        spanned = math.floor(100 * fwhm / step) / 100  # 2.999 is "2.99", not "3.00"
        wider = math.ceil(1000 * math.sqrt(need**2 - scherrer**2)) / 1000
        smaller = math.floor(10 * largest * scherrer / math.sqrt(need**2 - instrument**2)) / 10
        msg = (
            f"the narrowest peak (crystallites of {largest:g} nm, instrument_fwhm_deg "
            f"{instrument:g}) has a FWHM of {fwhm:.4g}°, only {spanned:.2f} channels of the "
            f"2θ axis (step {step:.4g}°); a peak needs at least {MIN_PEAK_CHANNELS} channels, "
            f"or its height depends on where it falls between channels: give at least "
            f"{channels} channels, or a 2θ range at most {width:g}° wide, or "
            f"instrument_fwhm_deg at least {wider:g}, or a largest crystallite size "
            f"(size_range_nm) of at most {smaller:g} nm"
        )
        raise ValueError(msg)

    @property
    def phase_names(self) -> tuple[str, ...]:
        return tuple(p if isinstance(p, str) else p.name for p in self.phases)


class ParticlesSource(_InsideTheCircle):
    """Catalyst bodies in one contrast: the ``particles`` phantom of the XRD-CT simulation
    (a support with cores, shells or spread loadings of other phases), each phase's
    fraction map weighted by its contrast. Images of one family, alike from sample to sample,
    unlike random shapes."""

    kind: Literal["particles"]
    size: int = Field(ge=8, le=4096, description="ground-truth image is size × size pixels")
    contrasts: tuple[float, ...] = Field(
        (0.35, 1.0, 0.65),
        min_length=1,
        description="value of each phase at fraction 1, in [0, 1]: the support first, then "
        "the phases it carries (their number is the number of phases)",
    )
    particles: tuple[int, int] = Field(
        (2, 5), description="fewest and most bodies per image (fewer if they do not fit)"
    )
    radius: tuple[float, float] = Field(
        (0.08, 0.22), description="range of a body's radius, as a fraction of the size"
    )
    loading: tuple[float, float] = Field(
        (0.3, 1.0), description="range of the fraction of a carried phase where it lies"
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> ParticlesSource:
        if not all(0.0 <= value <= 1.0 for value in self.contrasts):
            msg = f"contrasts must lie in [0, 1], got {list(self.contrasts)}"
            raise ValueError(msg)
        fewest, most = self.particles
        if not 1 <= fewest <= most:
            msg = f"particles must satisfy 1 <= fewest <= most, got {[fewest, most]}"
            raise ValueError(msg)
        low, high = self.radius
        if not 0.0 < low <= high < 0.5:
            msg = f"radius must satisfy 0 < low <= high < 0.5, got {[low, high]}"
            raise ValueError(msg)
        low, high = self.loading
        if not 0.0 < low <= high <= 1.0:
            msg = f"loading must satisfy 0 < low <= high <= 1, got {[low, high]}"
            raise ValueError(msg)
        return self

Source = Annotated[
    Union[ShapesSource, DIV2KSource, ExperimentalSource, XRDCTSource, ParticlesSource],
    Field(discriminator="kind"),
]


class Geometry(_Strict):
    """Parallel-beam geometry; angles evenly over [0, π), endpoint excluded."""

    angles: int = Field(180, ge=1, le=100_000, description="number of projection angles")
    detector: int | None = Field(
        None,
        ge=1,
        le=100_000,
        description="detector pixels (default: the fewest that see all of the ground truth's "
        "mass: the image's diagonal for sources that fill the square)",
    )
    detector_spacing: float = Field(
        1.0, gt=0, le=1000, description="detector pixel width in units of image pixels"
    )
    projector: Literal["line", "strip", "linear"] = Field(
        "linear", description="ASTRA projection model"
    )
    backend: Literal["auto", "astra-cuda", "astra-cpu", "matrix"] = Field(
        "auto", description="auto: astra-cuda where ASTRA sees a GPU, else matrix"
    )
    oversample: int = Field(
        1,
        ge=1,
        le=8,
        description="render the source n× finer, project that on an n× finer detector grid, "
        "and store its area average as the ground truth (sources shapes and particles)",
    )


class PoissonNoise(_Strict):
    """Photon-counting noise in the Beer–Lambert sense."""

    kind: Literal["poisson"]
    photons: float = Field(gt=0, le=1e15, description="incident photons per detector pixel")
    attenuation: float | None = Field(
        None,
        gt=0,
        description="attenuation of a pixel of value 1 per pixel width "
        "(default: 1/size, so a chord across the field of view through value 1 has "
        "optical depth 1)",
    )
    min_counts: float = Field(
        0.1, gt=0, description="zero counts are raised to this before the logarithm"
    )


class GaussianNoise(_Strict):
    """Additive Gaussian noise on the sinogram."""

    kind: Literal["gaussian"]
    sigma: float = Field(ge=0, description="standard deviation")
    relative: bool = Field(
        False, description="sigma is a fraction of each sinogram's largest absolute value"
    )


class CountingNoise(_Strict):
    """Photon counting on a signal that is itself counted (diffraction, fluorescence): each
    value v becomes Poisson(v · counts) / counts."""

    kind: Literal["counting"]
    counts: float = Field(
        gt=0, le=1e15, description="expected counts for a sinogram value of 1"
    )


class AirNoise(_Strict):
    """Air scatter: the same broad hump in 2θ added at every angle and detector pixel."""

    kind: Literal["air"]
    level: float = Field(gt=0, description="hump height, as a fraction of the sinogram's peak")
    center_deg: float | None = Field(None, description="hump centre (default: low end + 10%)")
    fwhm_deg: float | None = Field(None, gt=0, description="hump width (default: half the span)")


Noise = Annotated[
    Union[PoissonNoise, GaussianNoise, CountingNoise, AirNoise], Field(discriminator="kind")
]


class Output(_Strict):
    format: Literal["hdf5", "zarr"] = Field("hdf5", description="storage format")
    chunk: int = Field(64, ge=1, le=100_000, description="samples per chunk")


class Recipe(_Strict):
    """A validated recipe. Build it with :func:`load_recipe` or ``Recipe.model_validate``."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=100)
    task: Literal["reconstruction", "super-resolution", "hyperspectral"] = "reconstruction"
    seed: int = Field(ge=0, lt=2**63)
    source: Source
    geometry: Geometry = Geometry()
    noise: tuple[Noise, ...] = Field((), description="applied in order; empty = clean")
    downsample: tuple[int, ...] = Field(
        (), description="factors s: adds images_x{s} (bilinear)"
    )
    splits: dict[Literal["train", "val", "test"], int]
    output: Output = Output()

    @model_validator(mode="after")
    def _check_consistency(self) -> Recipe:
        size = self.source.size
        for factor in self.downsample:
            if factor < 2 or size % factor:
                msg = f"downsample factor {factor} must be >= 2 and divide the size {size}"
                raise ValueError(msg)
        if len(set(self.downsample)) != len(self.downsample):
            msg = f"downsample factors repeat: {list(self.downsample)}"
            raise ValueError(msg)
        if any(count < 0 for count in self.splits.values()):
            msg = f"split sizes must be >= 0, got {self.splits}"
            raise ValueError(msg)
        if sum(self.splits.values()) == 0:
            msg = "splits hold no samples: give at least one split a size > 0"
            raise ValueError(msg)
        if self.task == "super-resolution" and not self.downsample:
            msg = "task 'super-resolution' needs at least one downsample factor"
            raise ValueError(msg)
        hyperspectral = self.channels is not None
        if (self.task == "hyperspectral") != hyperspectral:
            msg = (
                "task 'hyperspectral' goes with a hyperspectral source (kind 'xrdct', or "
                f"'experimental' with a channel axis); got task {self.task!r}, "
                f"source {self.source.kind!r}"
            )
            raise ValueError(msg)
        for op in self.noise:
            if hyperspectral and op.kind == "poisson":
                msg = (
                    "noise 'poisson' is Beer–Lambert absorption; diffraction signals are "
                    "counted: use kind 'counting' (and 'air' for air scatter)"
                )
                raise ValueError(msg)
            if op.kind == "air" and self.source.kind != "xrdct":
                msg = "noise 'air' needs the 2θ axis of an xrdct source"
                raise ValueError(msg)
        if self.geometry.backend == "astra-cuda" and self.geometry.projector != "linear":
            msg = "backend 'astra-cuda' has only the linear projector"
            raise ValueError(msg)
        if self.geometry.oversample > 1 and self.source.kind not in OVERSAMPLED_SOURCES:
            msg = (
                f"geometry.oversample {self.geometry.oversample} needs a source that renders "
                f"finer than its pixels ({', '.join(OVERSAMPLED_SOURCES)}); source "
                f"{self.source.kind!r} is a pixel image: use oversample 1"
            )
            raise ValueError(msg)
        given = self.geometry.detector
        if given is not None and given * self.geometry.detector_spacing < self.field_needed:
            msg = (
                f"geometry.detector: {given} pixels of width {self.geometry.detector_spacing:g} "
                f"do not see all of the ground truth: source {self.source.kind!r} puts mass up "
                f"to {self.support_radius:.1f} pixels from the rotation axis, so the detector "
                f"needs at least {self.required_detector} pixels (or a mask that keeps the "
                "ground truth inside the field of view)"
            )
            raise ValueError(msg)
        return self

    @property
    def support_radius(self) -> float:
        """How far from the rotation axis, in image pixels, the ground truth's mass reaches
        (pixel centres; a bound that the source's construction guarantees)."""
        return self.source.support_radius

    @property
    def field_needed(self) -> float:
        """Width, in image pixels, that the detector must span to see all of the ground
        truth's mass at every angle: its support's diameter, plus one pixel on each side
        (the linear model spreads a pixel over its neighbours; the strip model over its
        square, at most √2/2)."""
        return 2 * (self.support_radius + 1)

    @property
    def required_detector(self) -> int:
        """The fewest detector pixels (of the recipe's spacing) that span
        :attr:`field_needed`, of the image size's parity at unit spacing (so that pixel and
        detector grids line up at angle 0)."""
        spacing = self.geometry.detector_spacing
        count = math.ceil(self.field_needed / spacing - 1e-9)
        if spacing == 1.0 and (count - self.source.size) % 2:
            count += 1
        return count

    @property
    def image_size(self) -> int:
        return self.source.size

    @property
    def channels(self) -> int | None:
        """Points of the spectral axis of a hyperspectral recipe, else None."""
        return getattr(self.source, "channels", None)

    @property
    def detector_count(self) -> int:
        """Detector pixels: as the recipe gives, else :attr:`required_detector`."""
        return self.geometry.detector or self.required_detector

    def canonical_json(self) -> str:
        """The recipe as compact JSON with sorted keys and every default filled in."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def sha256(self) -> str:
        """Hash of what the data depends on: everything but ``output`` (format, chunking),
        so one recipe stored as HDF5 or Zarr, in any chunking, has one hash."""
        content = self.model_dump(mode="json", exclude={"output"})
        text = json.dumps(content, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def with_output(self, *, format: str | None = None, chunk: int | None = None) -> Recipe:
        """A copy with the storage options replaced (:class:`RecipeError` if one is out of
        range, named as the recipe field it replaces)."""
        output = self.output.model_copy(
            update={k: v for k, v in {"format": format, "chunk": chunk}.items() if v is not None}
        )
        data = {**self.model_dump(), "output": output.model_dump()}
        return parse_recipe(data, origin=f"recipe {self.name}")


def published_recipes() -> dict[str, Path]:
    """Names and paths of the recipes that ship with tomobench."""
    candidates = [
        Path(str(resources.files("tomobench") / "recipes")),
        Path(__file__).resolve().parent.parent / "recipes",
    ]
    for folder in candidates:
        if folder.is_dir():
            return {path.stem: path for path in sorted(folder.glob("*.yaml"))}
    return {}


def load_recipe(path_or_name: str | Path) -> Recipe:
    """Read a recipe from a YAML file, or a published recipe by name (``shapes-128``); a
    file of that name comes first, a folder of that name does not hide the recipe."""
    path = Path(path_or_name)
    try:
        regular = path.is_file()
        absent = not regular and not path.exists()
    except OSError:  # a name too long: read_yaml says so, unless a published recipe has it
        regular = absent = False
    if not regular:
        published = published_recipes()
        if str(path_or_name) in published:
            path = published[str(path_or_name)]
        elif absent:
            names = ", ".join(published) or "none"
            msg = (
                f"recipe {str(path_or_name)!r} not found: "
                f"no such file, nor a published recipe ({names})"
            )
            raise RecipeError(msg)
    return parse_recipe(read_yaml(path, what="recipe"), origin=str(path))


def read_yaml(path: Path, *, what: str, error: type[Exception] = RecipeError) -> object:
    """The parsed YAML of a file; ``error`` names ``what`` and the file if it cannot be read
    or parsed (the line of a syntax error), or if it is hostile (:class:`_BoundedLoader`):
    not a regular file, larger than 1 MiB, aliases that expand past 100,000 nodes, nesting
    deeper than 100 levels, an integer of more than 1,000 characters, a key given twice."""
    text = _read_text(path, what=what, error=error)
    shown = shorten(str(path), 2 * _QUOTE_LIMIT)
    try:
        return yaml.load(text, Loader=_BoundedLoader)
    except _Refused as problem:
        mark = problem.problem_mark
        msg = f"{what} {shown}: line {mark.line + 1}: {problem.problem}"
        raise error(msg) from None
    except yaml.YAMLError as problem:
        mark = getattr(problem, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        said = " ".join(str(getattr(problem, "problem", None) or problem).split())
        msg = f"{what} {shown}: not valid YAML{where}: {shorten(said, _QUOTE_LIMIT)}"
        raise error(msg) from None
    except RecursionError:  # not expected within _YAML_DEPTH levels; never a traceback
        msg = f"{what} {shown}: nested too deeply (at most {_YAML_DEPTH} levels)"
        raise error(msg) from None


_YAML_BYTES = 1 << 20
"""Largest YAML file tomobench reads (recipes and configs are a few KiB)."""
_YAML_DEPTH = 100
"""Deepest nesting of collections in a YAML file, aliases expanded (recipes need 6)."""
_YAML_EXPANSION = 100_000
"""Most nodes that the aliases of a YAML file may add, expanded (a billion laughs adds 10⁹)."""
_YAML_DIGITS = 1_000
"""Most characters of an integer in a YAML file (Python converts at most 4,300 digits)."""
_QUOTE_LIMIT = QUOTE_LIMIT


def _read_text(path: Path, *, what: str, error: type[Exception]) -> str:
    """The UTF-8 text of a regular file of at most ``_YAML_BYTES``: anything else (a folder,
    a FIFO that would block, a device that never ends) is refused before it is opened."""

    def refuse(problem: str):
        raise error(f"{what} {shorten(str(path), 2 * _QUOTE_LIMIT)}: {problem}")

    try:
        status = os.stat(path)
        if stat.S_ISREG(status.st_mode):
            flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
            with os.fdopen(os.open(path, flags), "rb") as file:
                status = os.fstat(file.fileno())  # what was opened, were the file replaced
                data = file.read(_YAML_BYTES + 1) if stat.S_ISREG(status.st_mode) else b""
    except (OSError, ValueError) as problem:  # ValueError: a NUL in the path
        refuse(f"cannot be read: {getattr(problem, 'strerror', None) or problem}")
    if not stat.S_ISREG(status.st_mode):
        refuse(f"cannot be read: it is {file_kind(status.st_mode)}, not a regular file")
    if len(data) > _YAML_BYTES:
        refuse(f"{status.st_size} bytes, more than a {what} may hold ({_YAML_BYTES} bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as problem:
        refuse(f"not UTF-8 text (byte {problem.start}); a YAML file is expected")


class _Refused(yaml.MarkedYAMLError):
    """YAML that parses, but that tomobench refuses (see :class:`_BoundedLoader`)."""


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing what a hostile file would use against it, each with the
    line where it happens: aliases whose expansion adds more than ``_YAML_EXPANSION`` nodes
    (a "billion laughs") or an alias inside the node it names (a cycle); nesting deeper than
    ``_YAML_DEPTH`` (aliases expanded); integers of more than ``_YAML_DIGITS`` characters; a key
    given twice in one mapping (a merge key ``<<`` may still be overridden)."""

    def __init__(self, stream):
        super().__init__(stream)
        self._depth = 0  # collections open around the node being composed
        self._open: set[str] = set()  # anchors of the nodes being composed
        self._expanded = 0  # nodes the aliases so far add
        self._shapes: dict[int, tuple[int, int]] = {}  # id(node): (nodes, depth) expanded

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            if event.anchor in self._open:
                problem = f"alias *{shorten(event.anchor, 50)} lies inside the node it names"
                raise _Refused(problem=problem, problem_mark=event.start_mark)
            node = super().compose_node(parent, index)
            nodes, depth = self._shape(node)
            self._expanded += nodes
            if self._expanded > _YAML_EXPANSION:
                problem = f"aliases expand to more than {_YAML_EXPANSION:,} nodes"
                raise _Refused(problem=problem, problem_mark=event.start_mark)
            if self._depth + depth > _YAML_DEPTH:
                problem = f"nested deeper than {_YAML_DEPTH} levels, aliases expanded"
                raise _Refused(problem=problem, problem_mark=event.start_mark)
            return node
        if self._depth >= _YAML_DEPTH:
            problem = f"nested deeper than {_YAML_DEPTH} levels"
            raise _Refused(problem=problem, problem_mark=event.start_mark)
        self._depth += 1
        if event.anchor is not None:
            self._open.add(event.anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1
            self._open.discard(event.anchor)

    def _shape(self, node) -> tuple[int, int]:
        """(nodes, depth) of a composed node with its aliases expanded."""
        known = self._shapes.get(id(node))
        if known is not None:
            return known
        if isinstance(node, yaml.ScalarNode):
            children = []
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        else:
            children = [item for pair in node.value for item in pair]
        nodes, depth = 1, 0
        for child in children:
            child_nodes, child_depth = self._shape(child)
            nodes, depth = nodes + child_nodes, max(depth, child_depth)
        self._shapes[id(node)] = shape = (nodes, depth + 1)
        return shape

    def construct_yaml_int(self, node):
        digits = len(str(node.value).replace("_", ""))  # sign, prefix and digits
        if digits > _YAML_DIGITS:
            problem = f"an integer of {digits} characters (at most {_YAML_DIGITS})"
            raise _Refused(problem=problem, problem_mark=node.start_mark)
        try:
            return super().construct_yaml_int(node)
        except ValueError as caught:  # Python's limit on converting digits to an integer
            problem = f"an integer Python cannot read: {shorten(str(caught), _QUOTE_LIMIT)}"
            raise _Refused(problem=problem, problem_mark=node.start_mark) from None

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            first: dict = {}  # key: the line it is first given at
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    given = key in first
                except TypeError:  # an unhashable key: PyYAML says so
                    continue
                if given:
                    problem = f"key {quote(key)} is given twice (first at line {first[key]})"
                    raise _Refused(problem=problem, problem_mark=key_node.start_mark)
                first[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


_BoundedLoader.add_constructor("tag:yaml.org,2002:int", _BoundedLoader.construct_yaml_int)


def parse_recipe(data: object, *, origin: str = "recipe") -> Recipe:
    """Validate a mapping (parsed YAML or JSON) into a :class:`Recipe`."""
    if not isinstance(data, dict):
        msg = f"{origin}: a recipe must be a mapping of fields, got {type(data).__name__}"
        raise RecipeError(msg)
    try:
        return Recipe.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_describe(item) for item in error.errors())
        msg = f"{origin}: {problems}"
        raise RecipeError(msg) from None


_TAGGED = {
    "shapes": ShapesSource,
    "div2k": DIV2KSource,
    "experimental": ExperimentalSource,
    "xrdct": XRDCTSource,
    "particles": ParticlesSource,
    "counting": CountingNoise,
    "air": AirNoise,
    "poisson": PoissonNoise,
    "gaussian": GaussianNoise,
}
_NESTED = {"geometry": Geometry, "output": Output}


def _field_path(loc: tuple) -> str:
    parts: list[str] = []
    for position, item in enumerate(loc):
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in _TAGGED and position > 0:
            continue  # pydantic inserts the discriminator's value; the user never wrote it
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts) or "recipe"


def _describe(item: dict) -> str:
    """One problem of a validation error, in a bounded length: the path, what is wrong, and
    the input that was given (at most ``_QUOTE_LIMIT`` characters of each)."""
    path = shorten(_field_path(tuple(item["loc"])), _QUOTE_LIMIT)
    kind = item["type"]
    if kind == "extra_forbidden":
        parent = _model_at(tuple(item["loc"][:-1]))
        allowed = ", ".join(parent.model_fields) if parent is not None else "see recipe-schema"
        return f"{path}: unknown field (allowed here: {allowed})"
    if kind == "missing":
        return f"{path}: field required"
    message = shorten(item["msg"].removeprefix("Value error, "), 3 * _QUOTE_LIMIT)
    if kind in {"model_type", "union_tag_invalid", "union_tag_not_found"} or "input" not in item:
        return f"{path}: {message}"
    if isinstance(item["input"], dict):
        return f"{path}: {message}"
    return f"{path}: {message} (got {quote(item['input'])})"


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The model class that validates the mapping found at ``loc`` of a recipe."""
    if not loc:
        return Recipe
    if loc[-1] in _TAGGED:
        return _TAGGED[loc[-1]]
    if loc[-1] == "absorption" and len(loc) > 1 and loc[-2] == "xrdct":
        return AbsorptionSpec
    return _NESTED.get(loc[0]) if len(loc) == 1 else None
