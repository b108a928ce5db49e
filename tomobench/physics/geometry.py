"""Parallel-beam geometries: small, immutable, and printable as the call that rebuilds them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tomobench.errors import PhysicsError


@dataclass(frozen=True)
class ParallelGeometry:
    """A 2-D parallel-beam scan of a square image.

    The image is ``size`` × ``size`` pixels of width 1 centred on the rotation axis; the
    detector has ``detector`` pixels of width ``spacing``; ``angles`` projections are spread
    evenly over [0, π) (or [0, ``arc``)), endpoint excluded. ``oversample`` n makes
    projectors take images rendered n× finer and project them on an n× finer detector grid,
    binned back to ``detector`` pixels, so data are not made with the discretisation a
    reconstruction uses.
    """

    size: int
    angles: int
    detector: int
    spacing: float = 1.0
    oversample: int = 1
    arc: float = np.pi

    def __post_init__(self) -> None:
        for name in ("size", "angles", "detector", "oversample"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                msg = f"geometry {name} must be a positive integer, got {value!r}"
                raise PhysicsError(msg)
        if not 0 < self.arc <= 2 * np.pi:
            msg = f"geometry arc must be in (0, 2π], got {self.arc!r}"
            raise PhysicsError(msg)
        if not self.spacing > 0:
            msg = f"geometry spacing must be > 0, got {self.spacing!r}"
            raise PhysicsError(msg)

    def __repr__(self) -> str:
        arc = "" if self.arc == np.pi else f", arc={self.arc!r}"
        return (
            f"parallel_beam({self.size}, angles={self.angles}, detector={self.detector}, "
            f"spacing={self.spacing!r}, oversample={self.oversample}{arc})"
        )

    @property
    def angle_values(self) -> np.ndarray:
        """Projection angles in radians, float64, evenly over [0, arc) without the endpoint."""
        return np.linspace(0.0, self.arc, self.angles, endpoint=False)

    @property
    def image_shape(self) -> tuple[int, int]:
        return (self.size, self.size)

    @property
    def rendered_shape(self) -> tuple[int, int]:
        """Shape of the images a projector takes: the image rendered ``oversample`` × finer."""
        return (self.size * self.oversample, self.size * self.oversample)

    @property
    def sinogram_shape(self) -> tuple[int, int]:
        return (self.angles, self.detector)


def parallel_beam(
    size: int,
    *,
    angles: int,
    detector: int | None = None,
    spacing: float = 1.0,
    oversample: int = 1,
    arc: float = np.pi,
) -> ParallelGeometry:
    """A parallel-beam geometry for ``size`` × ``size`` images (detector defaults to size;
    angles over [0, ``arc``), π by default)."""
    return ParallelGeometry(
        size=size,
        angles=angles,
        detector=size if detector is None else detector,
        spacing=float(spacing),
        oversample=oversample,
        arc=float(arc),
    )


def from_recipe(recipe) -> ParallelGeometry:
    """The geometry a recipe describes."""
    return parallel_beam(
        recipe.image_size,
        angles=recipe.geometry.angles,
        detector=recipe.detector_count,
        spacing=recipe.geometry.detector_spacing,
        oversample=recipe.geometry.oversample,
    )


def circular_mask(
    size: int, *, radius: float | None = None, centre: float | None = None
) -> np.ndarray:
    """True where a pixel centre of a size × size image lies at most ``radius`` (default
    size/2: the inscribed circle) from (``centre``, ``centre``) (default (size-1)/2, the
    rotation axis)."""
    centre = (size - 1) / 2 if centre is None else centre
    radius = size / 2 if radius is None else radius
    rows, cols = np.ogrid[:size, :size]
    return (rows - centre) ** 2 + (cols - centre) ** 2 <= radius**2


def air_pixels(recipe) -> np.ndarray:
    """Detector pixels that see only air at every angle: (D,) bool, True where a whole pixel
    lies outside the field the ground truth's mass reaches (``recipe.field_needed``: its
    support plus the projection model's reach). Their mean is the background (air scatter)
    that the sinograms carry beside the sample's signal."""
    geometry = from_recipe(recipe)
    offsets = (np.arange(geometry.detector) - (geometry.detector - 1) / 2) * geometry.spacing
    return np.abs(offsets) - geometry.spacing / 2 > recipe.field_needed / 2
