"""Synthetic saliency masks of seed 001 (sec. 4.2, fig. 3) for experiments and tests.

- `half_mask`: level 1 on the left half, 0 on the right (K in {1, 17}, 50/50).
- `grid_mask`: a 4x4 grid of levels [0, 0.33, 0.66, 1] in a rotating pattern (K in {1, 5, 11, 17},
  25% each, seed 001 table 3).
- `perlin_mask`: 3-octave Perlin noise scaled to 0..255, its 6 least significant bits dropped,
  leaving 4 levels mapped to [0.25, 0.5, 0.75, 1.0] (K in {1, 5, 9, 13}).
"""

from __future__ import annotations

import numpy as np

GRID_LEVELS = (0.0, 0.33, 0.66, 1.0)


def half_mask(height: int, width: int) -> np.ndarray:
    """Left half salient (1.0), right half not (0.0); float32 [height, width]."""
    mask = np.zeros((height, width), np.float32)
    mask[:, : width // 2] = 1.0
    return mask


def grid_mask(height: int, width: int, cells: int = 4, levels=GRID_LEVELS) -> np.ndarray:
    """`cells` x `cells` grid whose level rotates by one step per row and per column."""
    rows = (np.arange(height) * cells) // height
    cols = (np.arange(width) * cells) // width
    table = np.asarray(levels, np.float32)
    return table[(rows[:, None] + cols[None, :]) % len(table)]


def perlin_noise(height: int, width: int, octaves: int = 3, cells: int = 4, seed: int = 0):
    """Sum of `octaves` Perlin gradient-noise layers (frequency x2, amplitude /2 per octave)."""
    rng = np.random.default_rng(seed)
    total = np.zeros((height, width), np.float64)
    amplitude = 1.0
    for octave in range(octaves):
        total += amplitude * _perlin_layer(height, width, cells * 2**octave, rng)
        amplitude /= 2.0
    return total


def _perlin_layer(height: int, width: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """One layer of Perlin's (2002) improved noise on a `cells`-wide lattice."""
    angles = rng.uniform(0.0, 2.0 * np.pi, (cells + 1, cells + 1))
    grad = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    y = np.arange(height) * cells / height
    x = np.arange(width) * cells / width
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]

    def corner(dy: int, dx: int) -> np.ndarray:
        g = grad[(y0 + dy)[:, None], (x0 + dx)[None, :]]
        return g[..., 0] * (fx - dx) + g[..., 1] * (fy - dy)

    def fade(t: np.ndarray) -> np.ndarray:
        return t * t * t * (t * (t * 6 - 15) + 10)  # Perlin 2002: 6t^5 - 15t^4 + 10t^3

    u, v = fade(fx), fade(fy)
    top = corner(0, 0) * (1 - u) + corner(0, 1) * u
    bottom = corner(1, 0) * (1 - u) + corner(1, 1) * u
    return top * (1 - v) + bottom * v


def perlin_mask(height: int, width: int, octaves: int = 3, seed: int = 0) -> np.ndarray:
    """Perlin noise -> 8 bits -> top 2 bits -> levels (q + 1) / 4 in {0.25, 0.5, 0.75, 1}."""
    noise = perlin_noise(height, width, octaves, seed=seed)
    span = noise.max() - noise.min()
    byte = np.zeros_like(noise) if span == 0 else (noise - noise.min()) / span * 255.0
    quarter = np.floor(byte).astype(np.uint8) >> 6  # drop the 6 least significant bits
    return ((quarter.astype(np.float32) + 1.0) / 4.0).astype(np.float32)


SYNTHETIC_MASKS = {"half": half_mask, "grid": grid_mask, "perlin": perlin_mask}
