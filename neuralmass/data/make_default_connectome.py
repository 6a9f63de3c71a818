"""Generate the bundled synthetic 76-region connectome, ``default_connectivity.npz``.

It is **synthetic**: drawn from a seeded random recipe, not measured in any brain. It only has
the rough shape of a real region-level connectome, so that examples, tests and benchmarks have
something realistic to run on without the GPL-licensed tvb-data package.

Recipe (seed :data:`SEED`, NumPy's ``default_rng``):

1. Centres (mm): 38 points uniform in the left half (x <= -5) of an ellipsoid with semi-axes
   70 (x, left-right), 100 (y, posterior-anterior) and 60 (z, inferior-superior), at least 15
   apart (rejection sampling); the right hemisphere mirrors them (x -> -x) with 2 mm Gaussian
   jitter. Labels ``L.R00`` ... ``L.R37``, then ``R.R00`` ... ``R.R37``; region ``i`` and
   ``i + 38`` are homologues.
2. Edges (undirected): all 38 homotopic pairs, then pairs drawn without replacement with
   probability proportional to ``exp(-distance / 40 mm)`` (x 0.1 between hemispheres) until
   25 % of the 2,850 region pairs are connected.
3. Weights: log-normal (mu 0, sigma 1), the same in both directions, divided by the largest so
   the maximum is 1. Zero diagonal.
4. Tract lengths (mm), for every pair: Euclidean distance x a curvature factor uniform in
   [1.2, 1.5], clipped to [10, 250]; symmetric, zero diagonal.

Regenerate with ``python -m neuralmass.data.make_default_connectome``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SEED = 76
N_PER_HEMISPHERE = 38
SEMI_AXES_MM = np.array([70.0, 100.0, 60.0])
MIDLINE_GAP_MM = 5.0
MIN_SPACING_MM = 15.0
MIRROR_JITTER_MM = 2.0
DENSITY = 0.25
DECAY_LENGTH_MM = 40.0
INTERHEMISPHERIC_FACTOR = 0.1
CURVATURE = (1.2, 1.5)
LENGTH_RANGE_MM = (10.0, 250.0)
OUTPUT = Path(__file__).with_name("default_connectivity.npz")


def _left_centres(rng: np.random.Generator) -> np.ndarray:
    """(38, 3) points in the left half-ellipsoid, pairwise at least MIN_SPACING_MM apart."""
    points: list[np.ndarray] = []
    for _ in range(100_000):
        p = rng.uniform(-SEMI_AXES_MM, SEMI_AXES_MM)
        inside = np.sum((p / SEMI_AXES_MM) ** 2) <= 1.0 and p[0] <= -MIDLINE_GAP_MM
        if inside and all(np.linalg.norm(p - q) >= MIN_SPACING_MM for q in points):
            points.append(p)
            if len(points) == N_PER_HEMISPHERE:
                return np.array(points)
    raise RuntimeError("could not place the region centres; lower MIN_SPACING_MM")


def generate(seed: int = SEED) -> dict[str, np.ndarray]:
    """The connectome as arrays: ``weights`` and ``tract_lengths`` (76, 76), ``centres``
    (76, 3) in mm and ``labels`` (76,) strings."""
    rng = np.random.default_rng(seed)
    n_half = N_PER_HEMISPHERE
    n = 2 * n_half
    left = _left_centres(rng)
    right = left * np.array([-1.0, 1.0, 1.0]) + rng.normal(0.0, MIRROR_JITTER_MM, left.shape)
    centres = np.concatenate([left, right])
    distance = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)

    i, j = np.triu_indices(n, k=1)
    homotopic = j == i + n_half
    same_side = (i < n_half) == (j < n_half)
    score = np.exp(-distance[i, j] / DECAY_LENGTH_MM)
    score = np.where(same_side, score, INTERHEMISPHERIC_FACTOR * score)
    score[homotopic] = 0.0
    n_drawn = round(DENSITY * i.size) - n_half
    drawn = rng.choice(i.size, size=n_drawn, replace=False, p=score / score.sum())
    connected = homotopic.copy()
    connected[drawn] = True

    weights = np.zeros((n, n))
    strength = rng.lognormal(0.0, 1.0, size=int(connected.sum()))
    weights[i[connected], j[connected]] = strength
    weights += weights.T
    weights /= weights.max()

    lengths = np.zeros((n, n))
    curvature = rng.uniform(*CURVATURE, size=i.size)
    lengths[i, j] = np.clip(distance[i, j] * curvature, *LENGTH_RANGE_MM)
    lengths += lengths.T

    labels = [f"L.R{k:02d}" for k in range(n_half)] + [f"R.R{k:02d}" for k in range(n_half)]
    return {
        "weights": weights,
        "tract_lengths": lengths,
        "centres": centres,
        "labels": np.array(labels),
    }


def main() -> None:
    """Write :data:`OUTPUT` (compressed, no pickled objects)."""
    np.savez_compressed(OUTPUT, **generate())
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
