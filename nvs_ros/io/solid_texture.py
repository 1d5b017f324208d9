"""Solid (3D) procedural textures: colour as a function of the surface point itself.

A solid texture has no UV map, so it never tiles or stretches, and what a surface point looks
like is the same from every camera. The patterns have sharp colour edges at many scales, which
is what feature detectors (SIFT) and photometric losses need.
"""

from dataclasses import dataclass
from typing import Literal

import numpy as np

TextureStyle = Literal["bands", "mosaic", "spots"]

# Large odd constants decorrelate the three lattice axes before mixing (spatial hashing, as in
# Teschner et al. 2003); the final multiply-shift spreads every input bit over the table index.
_AXIS_PRIMES_3 = np.array([73856093, 19349663, 83492791], dtype=np.int64)
_MIX = np.int64(0x2545F491)


class ValueNoise:
    """A smooth random scalar field on R^3 in [-1, 1]: value noise with quintic interpolation.

    Random values sit on the integer lattice (looked up through a hash, so the field does not
    repeat over any distance a scene spans) and are blended with a C2 fade, so no lattice
    creases show. `fbm` sums rotated octaves, which hides the lattice axes.
    """

    def __init__(self, rng: np.random.Generator, table_bits: int = 16, max_octaves: int = 8) -> None:
        self._values_T = rng.uniform(-1.0, 1.0, 1 << table_bits).astype(np.float32)
        self._index_mask = np.int64((1 << table_bits) - 1)
        self._rotations_O33 = np.stack([_random_rotation(rng) for _ in range(max_octaves)])
        self._shifts_O3 = rng.uniform(-1000.0, 1000.0, (max_octaves, 3))

    def cell_index(self, cells_R3: np.ndarray) -> np.ndarray:
        """A pseudo-random non-negative integer per integer lattice cell (R,), int64."""
        scaled_R3 = cells_R3.astype(np.int64) * _AXIS_PRIMES_3
        return self._mix(scaled_R3[:, 0] ^ scaled_R3[:, 1] ^ scaled_R3[:, 2])

    def value(self, points_R3: np.ndarray) -> np.ndarray:
        """Noise at each point (R,) in [-1, 1]: random values at integer lattice points, blended."""
        cells_R3 = np.floor(points_R3)
        # Per-axis contiguous rows; float32 is plenty for the in-cell blend and twice as fast.
        frac_3R = np.ascontiguousarray((points_R3 - cells_R3).T, dtype=np.float32)
        fade_3R = frac_3R * frac_3R * frac_3R * (frac_3R * (frac_3R * 6.0 - 15.0) + 10.0)
        scaled_3R = cells_R3.T.astype(np.int64) * _AXIS_PRIMES_3[:, None]
        hx, hy, hz = ((row_R, row_R + prime) for row_R, prime in zip(scaled_3R, _AXIS_PRIMES_3))
        hxy = {(i, j): hx[i] ^ hy[j] for i in (0, 1) for j in (0, 1)}
        corner = {(i, j, k): self._values_T[((hxy[i, j] ^ hz[k]) * _MIX >> 20) & self._index_mask]
                  for i in (0, 1) for j in (0, 1) for k in (0, 1)}
        fx, fy, fz = fade_3R
        along_z = {(i, j): corner[i, j, 0] + fz * (corner[i, j, 1] - corner[i, j, 0])
                   for i in (0, 1) for j in (0, 1)}
        along_y = [along_z[i, 0] + fy * (along_z[i, 1] - along_z[i, 0]) for i in (0, 1)]
        return along_y[0] + fx * (along_y[1] - along_y[0])

    def fbm(self, points_R3: np.ndarray, octaves: int) -> np.ndarray:
        """Fractal sum of `octaves` rotated octaves (frequency x2, amplitude x0.5), about [-1, 1]."""
        total_R = np.zeros(len(points_R3))
        amplitude, norm = 1.0, 0.0
        for octave in range(octaves):
            rotated_R3 = linear_map(points_R3, self._rotations_O33[octave])
            total_R += amplitude * self.value(rotated_R3 * (2.0 ** octave) + self._shifts_O3[octave])
            norm += amplitude
            amplitude *= 0.5
        # A sum of independent octaves has a smaller spread than one: rescale to about [-1, 1].
        return np.clip(total_R / norm * 1.6, -1.0, 1.0)

    def _mix(self, hashes_R: np.ndarray) -> np.ndarray:
        # int64 multiply wraps around (intended); shift keeps well-mixed middle bits.
        return ((hashes_R * _MIX) >> 20) & np.int64(0x7FFFFFFF)


def linear_map(points_R3: np.ndarray, matrix_33: np.ndarray) -> np.ndarray:
    """points_R3 @ matrix_33.T, computed column by column without BLAS.

    Multi-threaded OpenBLAS is slow on these tall, thin products when the CPU is busy (measured
    on 2 shared cores: 15-45 ms instead of 1 ms for 65k points).
    """
    out_R3 = np.empty(points_R3.shape)
    for row in range(3):
        out_R3[:, row] = points_R3[:, 0] * matrix_33[row, 0]
        out_R3[:, row] += points_R3[:, 1] * matrix_33[row, 1]
        out_R3[:, row] += points_R3[:, 2] * matrix_33[row, 2]
    return out_R3


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q_33, r_33 = np.linalg.qr(rng.normal(size=(3, 3)))
    q_33 = q_33 * np.sign(np.diag(r_33))
    return q_33 if np.linalg.det(q_33) > 0 else -q_33


@dataclass(frozen=True)
class SolidTexture:
    """Colour of a surface point, from a palette and a noise field sampled at that point.

    Styles: "bands" (contour bands of fractal noise, like a coloured relief map), "mosaic"
    (irregular tiles: a noise-warped 3D grid of randomly coloured cells), "spots" (sharp blobs on
    wide bands). All are flat colours with sharp, curved borders: of the
    patterns tried, these give SIFT the most repeatable, distinctive features (smooth colour
    noise gave about 10x fewer matches, brightness variation inside regions fewer too).
    """

    style: TextureStyle
    palette_K3: np.ndarray
    """Colours, RGB in [0, 1]; at least 4."""
    frequency: float
    """Noise cells per scene unit at the coarsest octave (pattern size ~ 1 / frequency)."""
    offset_3: np.ndarray
    """Where in the noise field this texture samples: two textures with different offsets differ."""
    octaves: int = 5

    def colour(self, points_R3: np.ndarray, noise: ValueNoise) -> np.ndarray:
        """RGB (R, 3) in [0, 1] at surface points (R, 3) given in world coordinates."""
        q_R3 = (points_R3 + self.offset_3) * self.frequency
        if self.style == "bands":
            return self._bands(q_R3, noise)
        if self.style == "mosaic":
            return self._mosaic(q_R3, noise)
        if self.style == "spots":
            return self._spots(q_R3, noise)
        raise ValueError(f"unknown texture style {self.style!r}")

    def _bands(self, q_R3: np.ndarray, noise: ValueNoise) -> np.ndarray:
        level_R = noise.fbm(q_R3, self.octaves)
        index_R = np.floor(level_R * 0.8 * len(self.palette_K3)).astype(np.int64)
        return self.palette_K3[index_R % len(self.palette_K3)]

    def _mosaic(self, q_R3: np.ndarray, noise: ValueNoise) -> np.ndarray:
        # A strong warp bends the cell walls: straight edges give SIFT edges, not blobs or corners.
        warp_R3 = np.stack([noise.fbm(q_R3 * 0.7 + shift, 3) for shift in (11.0, 23.0, 37.0)], axis=1)
        cells_R3 = np.floor(q_R3 * 3.0 + 3.0 * warp_R3)
        return self.palette_K3[noise.cell_index(cells_R3) % len(self.palette_K3)]

    def _spots(self, q_R3: np.ndarray, noise: ValueNoise) -> np.ndarray:
        level_R = noise.fbm(q_R3, self.octaves)
        index_R = np.floor(level_R * 0.5 * len(self.palette_K3)).astype(np.int64)
        rgb_R3 = self.palette_K3[index_R % len(self.palette_K3)]
        spots_R = noise.fbm(q_R3 * 3.0 + 101.0, 2)
        # Spot colours are offset by an odd step: the opposite brightness to the band beneath.
        for spot_R, step in ((spots_R > 0.6, 1), (spots_R < -0.6, 3)):
            rgb_R3[spot_R] = self.palette_K3[(index_R[spot_R] + step) % len(self.palette_K3)]
        return rgb_R3


@dataclass(frozen=True)
class SplitTexture:
    """One texture below a height and another above it: the floor and the walls of a room."""

    below: SolidTexture
    above: SolidTexture
    split_z: float

    def colour(self, points_R3: np.ndarray, noise: ValueNoise) -> np.ndarray:
        """RGB (R, 3) in [0, 1] at surface points (R, 3) given in world coordinates."""
        below_R = points_R3[:, 2] < self.split_z
        rgb_R3 = np.empty(points_R3.shape)
        rgb_R3[below_R] = self.below.colour(points_R3[below_R], noise)
        rgb_R3[~below_R] = self.above.colour(points_R3[~below_R], noise)
        return rgb_R3


def random_palette(rng: np.random.Generator, count: int, saturation: tuple[float, float] = (0.45, 1.0),
                   max_value: float = 1.0) -> np.ndarray:
    """`count` colours (K, 3) in [0, 1] with spread-out hues, saturations drawn from the range
    `saturation`, and alternating brightness.

    Brightness alternates dark/light so neighbouring colours differ in grey level too: SIFT sees
    only grey levels.
    """
    hues_K = (rng.uniform() + np.arange(count) * 0.618034 + rng.uniform(-0.08, 0.08, count)) % 1.0
    saturations_K = rng.uniform(*saturation, count)
    values_K = np.where(np.arange(count) % 2 == 0, rng.uniform(0.08, 0.25, count),
                        rng.uniform(0.55, 1.0, count)) * max_value
    return _hsv_to_rgb(hues_K, saturations_K, values_K)


def _hsv_to_rgb(h_K: np.ndarray, s_K: np.ndarray, v_K: np.ndarray) -> np.ndarray:
    sector_K = np.floor(h_K * 6.0).astype(int) % 6
    f_K = h_K * 6.0 - np.floor(h_K * 6.0)
    p_K, q_K, t_K = v_K * (1 - s_K), v_K * (1 - s_K * f_K), v_K * (1 - s_K * (1 - f_K))
    choices_6K3 = np.stack([np.stack(c, axis=1) for c in (
        (v_K, t_K, p_K), (q_K, v_K, p_K), (p_K, v_K, t_K),
        (p_K, q_K, v_K), (t_K, p_K, v_K), (v_K, p_K, q_K))])
    return choices_6K3[sector_K, np.arange(len(h_K))]
