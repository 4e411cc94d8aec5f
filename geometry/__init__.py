"""Pure-torch geometry of parameter-space vectors (SCIENCE.md measurements 1-4, 7).

Nothing here imports Lightning: every function takes tensors and returns tensors or floats,
so callbacks, analysis and tests all share one definition of each measurement.
"""

from geometry.angles import compare_subspaces, grassmann_distance, overlap, principal_angles
from geometry.capture import capture, capture_norm, capture_rows, random_capture_baseline
from geometry.drift import half_life
from geometry.hessian import flat_hvp, lanczos_top_eigenpairs
from geometry.prefix import nested_prefix_basis, prefix_capture_curve
from geometry.spectrum import effective_rank, participation_ratio, spectrum_summary, topk_energy
from geometry.subspace import basis_from_rows, gram_eigh, orthonormalize, topk_basis
from geometry.window import VectorWindow

__all__ = [
    "VectorWindow",
    "basis_from_rows",
    "capture",
    "capture_norm",
    "capture_rows",
    "compare_subspaces",
    "effective_rank",
    "flat_hvp",
    "gram_eigh",
    "grassmann_distance",
    "half_life",
    "lanczos_top_eigenpairs",
    "nested_prefix_basis",
    "orthonormalize",
    "overlap",
    "participation_ratio",
    "prefix_capture_curve",
    "principal_angles",
    "random_capture_baseline",
    "spectrum_summary",
    "topk_basis",
    "topk_energy",
]
