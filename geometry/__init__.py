"""Pure-torch geometry of parameter-space vectors (SCIENCE.md measurements 1-4).

Nothing here imports Lightning: every function takes tensors and returns tensors or floats,
so callbacks, analysis and tests all share one definition of each measurement.
"""

from geometry.angles import compare_subspaces, grassmann_distance, overlap, principal_angles
from geometry.capture import capture, capture_norm, random_capture_baseline
from geometry.drift import half_life
from geometry.spectrum import effective_rank, participation_ratio, spectrum_summary, topk_energy
from geometry.subspace import basis_from_rows, gram_eigh, orthonormalize, topk_basis
from geometry.window import VectorWindow

__all__ = [
    "VectorWindow",
    "basis_from_rows",
    "capture",
    "capture_norm",
    "compare_subspaces",
    "effective_rank",
    "gram_eigh",
    "grassmann_distance",
    "half_life",
    "orthonormalize",
    "overlap",
    "participation_ratio",
    "principal_angles",
    "random_capture_baseline",
    "spectrum_summary",
    "topk_basis",
    "topk_energy",
]
