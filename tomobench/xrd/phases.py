"""Crystalline phases: a lattice and its main reflections, turned into d-spacings.

The shipped ``PHASES`` hold approximate, typical literature lattice parameters and the main
reflections with approximate relative intensities (strongest = 100, as on powder
diffraction cards for Cu Kα); ``docs/xrd.md`` states where each comes from. A phase's
intensities hold at its ``card_wavelength`` (Cu Kα unless given);
:func:`tomobench.xrd.relative_intensities` carries them to another wavelength.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CRYSTAL_SYSTEMS = ("cubic", "tetragonal", "hexagonal")
CU_KALPHA_ANGSTROM = 1.5406  # Cu Kα1, the wavelength of the powder diffraction cards


@dataclass(frozen=True)
class Phase:
    """One crystalline phase.

    Give either ``reflections`` — (h, k, l, relative intensity) with the lattice parameters
    ``a`` (and ``c`` for tetragonal and hexagonal lattices), in Å — or ``d_list`` — (d in Å,
    relative intensity) — when the Miller indices do not matter. Lists are stored as tuples.
    The intensities are those measured at ``card_wavelength`` (Å; Cu Kα by default), so every
    reflection must diffract there: λ / 2d < 1.
    """

    name: str
    crystal_system: str
    a: float | None = None
    c: float | None = None
    reflections: tuple[tuple[int, int, int, float], ...] = ()
    d_list: tuple[tuple[float, float], ...] = ()
    card_wavelength: float = CU_KALPHA_ANGSTROM

    def __post_init__(self):
        object.__setattr__(self, "reflections", tuple(tuple(r) for r in self.reflections))
        object.__setattr__(self, "d_list", tuple(tuple(r) for r in self.d_list))
        if self.crystal_system not in CRYSTAL_SYSTEMS:
            msg = (
                f"phase {self.name!r}: crystal_system={self.crystal_system!r}; "
                f"allowed: {', '.join(CRYSTAL_SYSTEMS)}"
            )
            raise ValueError(msg)
        if bool(self.reflections) == bool(self.d_list):
            msg = f"phase {self.name!r}: give either reflections or d_list (exactly one)"
            raise ValueError(msg)
        if self.reflections:
            if self.a is None or self.a <= 0:
                msg = f"phase {self.name!r}: a={self.a!r}; a positive length in Å is needed"
                raise ValueError(msg)
            if self.crystal_system != "cubic" and (self.c is None or self.c <= 0):
                msg = (
                    f"phase {self.name!r}: c={self.c!r}; a {self.crystal_system} lattice "
                    "needs a positive c in Å"
                )
                raise ValueError(msg)
            if any(len(r) != 4 for r in self.reflections):
                msg = f"phase {self.name!r}: each reflection is (h, k, l, intensity)"
                raise ValueError(msg)
            if any(r[:3] == (0, 0, 0) for r in self.reflections):
                msg = f"phase {self.name!r}: (0 0 0) is no reflection"
                raise ValueError(msg)
        elif any(len(r) != 2 or r[0] <= 0 for r in self.d_list):
            msg = f"phase {self.name!r}: each d_list entry is (d > 0 in Å, intensity)"
            raise ValueError(msg)
        if not self.card_wavelength > 0:
            msg = (
                f"phase {self.name!r}: card_wavelength={self.card_wavelength!r}; "
                "a positive wavelength in Å is needed"
            )
            raise ValueError(msg)
        d, _ = self.d_spacings()
        unreachable = np.flatnonzero(self.card_wavelength / (2 * d) >= 1)
        if unreachable.size:
            first = unreachable[0]
            hkl = " ".join(str(i) for i in self.reflections[first][:3]) if self.reflections else ""
            msg = (
                f"phase {self.name!r}: the reflection {f'({hkl}) ' if hkl else ''}of "
                f"d = {d[first]:.4f} Å does not diffract at "
                f"card_wavelength={self.card_wavelength!r} Å "
                "(λ / 2d ≥ 1), so its intensity cannot have been measured there; give "
                "card_wavelength, the wavelength at which the intensities were measured"
            )
            raise ValueError(msg)

    def d_spacings(self, *, a_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(d in Å, relative intensity), float64 arrays of one value per reflection.

        ``a_scale`` multiplies every lattice parameter (an isotropic expansion), hence every d.
        """
        if self.d_list:
            d, intensity = np.array(self.d_list, dtype=np.float64).T
            return d * a_scale, intensity
        h, k, ell, intensity = np.array(self.reflections, dtype=np.float64).T
        a = self.a * a_scale
        if self.crystal_system == "cubic":
            inverse_d2 = (h**2 + k**2 + ell**2) / a**2
        elif self.crystal_system == "tetragonal":
            inverse_d2 = (h**2 + k**2) / a**2 + ell**2 / (self.c * a_scale) ** 2
        else:  # hexagonal
            inverse_d2 = 4 / 3 * (h**2 + h * k + k**2) / a**2 + ell**2 / (self.c * a_scale) ** 2
        return 1 / np.sqrt(inverse_d2), intensity


# Approximate relative intensities of the main reflections, strongest = 100.
PHASES: dict[str, Phase] = {
    phase.name: phase
    for phase in (
        Phase(
            "Cu",
            "cubic",
            a=3.615,
            reflections=[
                (1, 1, 1, 100), (2, 0, 0, 46), (2, 2, 0, 20), (3, 1, 1, 17),
                (2, 2, 2, 5), (4, 0, 0, 3), (3, 3, 1, 9), (4, 2, 0, 8),
            ],
        ),
        Phase(
            "Ni",
            "cubic",
            a=3.524,
            reflections=[
                (1, 1, 1, 100), (2, 0, 0, 42), (2, 2, 0, 21), (3, 1, 1, 20),
                (2, 2, 2, 7), (4, 0, 0, 4), (3, 3, 1, 14), (4, 2, 0, 15),
            ],
        ),
        Phase(
            "Pt",
            "cubic",
            a=3.924,
            reflections=[
                (1, 1, 1, 100), (2, 0, 0, 53), (2, 2, 0, 31), (3, 1, 1, 33),
                (2, 2, 2, 12), (4, 0, 0, 6), (3, 3, 1, 22), (4, 2, 0, 20),
            ],
        ),
        Phase(
            "CeO2",
            "cubic",
            a=5.411,
            reflections=[
                (1, 1, 1, 100), (2, 0, 0, 30), (2, 2, 0, 51), (3, 1, 1, 44),
                (2, 2, 2, 5), (4, 0, 0, 5), (3, 3, 1, 15), (4, 2, 0, 8), (4, 2, 2, 12),
            ],
        ),
        Phase(
            "gamma-Al2O3",
            "cubic",
            a=7.90,
            reflections=[
                (1, 1, 1, 40), (2, 2, 0, 20), (3, 1, 1, 80), (2, 2, 2, 50),
                (4, 0, 0, 100), (5, 1, 1, 30), (4, 4, 0, 100),
            ],
        ),
        Phase(
            "ZnO",
            "hexagonal",
            a=3.250,
            c=5.207,
            reflections=[
                (1, 0, 0, 57), (0, 0, 2, 44), (1, 0, 1, 100), (1, 0, 2, 23),
                (1, 1, 0, 32), (1, 0, 3, 29), (2, 0, 0, 4), (1, 1, 2, 23),
                (2, 0, 1, 11), (0, 0, 4, 2), (2, 0, 2, 4),
            ],
        ),
        Phase(
            "TiO2-anatase",
            "tetragonal",
            a=3.785,
            c=9.514,
            reflections=[
                (1, 0, 1, 100), (1, 0, 3, 10), (0, 0, 4, 20), (1, 1, 2, 10),
                (2, 0, 0, 35), (1, 0, 5, 20), (2, 1, 1, 20), (2, 0, 4, 14),
                (1, 1, 6, 6), (2, 2, 0, 6), (2, 1, 5, 10),
            ],
        ),
    )
}
