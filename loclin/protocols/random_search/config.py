"""The random-search protocol's section (``random_search:``) and its checks (docs/science.md 8)."""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import DictConfig

from loclin.protocols.train.config import FAMILIES, phase_plan, validate_phased
from loclin.schema import protocol_section, require


@protocol_section("random_search")
@dataclass
class RandomSearchConfig:  # protocol: random_search, at points of the first phase (docs/science.md 8)
    at_steps: list[int] = field(
        default_factory=lambda: []
    )  # probe points θ_s (geometry.window <= s <= steps − geometry.k)
    sigma_multiples: list[float] = field(
        default_factory=lambda: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0]
    )  # σ in units of σ_lin
    samples: int = 1000  # perturbations per σ (best of N for N up to this)
    best_of: list[int] = field(default_factory=lambda: [2, 10, 100, 1000])
    n_star: int = 100  # N of the σ* and subspace comparisons
    hutchinson_samples: int = 32  # Rademacher probes for tr H and ‖H‖_F²
    batch_size: int = 256  # rows of the fixed (training-distribution) and held-out losses, split over tasks
    subspaces: list[str] = field(default_factory=lambda: ["rolling", "prefix", "random"])  # k = geometry.k
    subspace_samples: int = 200
    vectorize: bool = (
        True  # vmap over chunks of perturbations (benchmarks/random_search_throughput.py: pays on small models)
    )
    chunk: int = 16  # perturbations per vmapped call
    widths: list[int] = field(
        default_factory=lambda: []
    )  # synthetic: also probe these d_model (end of training) for the dimension sweep


def validate_random_search(c: DictConfig) -> None:
    """The random-search protocol: the phased runner's checks, then the probe's."""
    validate_phased(c)
    r, g, first_steps = c.random_search, c.geometry, phase_plan(c)[0].steps
    require(len(r.at_steps) > 0, "random_search.at_steps is empty; name the steps of the first phase to probe")
    low = g.window if g.enabled else 0
    high = first_steps - (g.k if g.enabled and "prefix" in r.subspaces else 0)
    outside = [s for s in r.at_steps if not low <= s <= high]
    require(
        not outside,
        f"random_search.at_steps {outside} must lie in [{low}, {high}] (after the first window fills, and geometry.k "
        f"updates before the end of the {first_steps}-step first phase)",
    )
    unknown = [name for name in r.subspaces if name not in ("rolling", "prefix", "random")]
    require(not unknown, f"random_search.subspaces: unknown {unknown}; choose from rolling, prefix, random")
    needs = {"rolling": "grad", "prefix": "update"}
    for name, source in needs.items():
        require(
            name not in r.subspaces or (g.enabled and source in g.sources),
            f"random_search.subspaces '{name}' needs geometry.enabled with '{source}' in geometry.sources",
        )
    require(
        len(r.sigma_multiples) > 0 and all(m > 0 for m in r.sigma_multiples),
        f"random_search.sigma_multiples={list(r.sigma_multiples)} must be positive",
    )
    require(list(r.sigma_multiples) == sorted(r.sigma_multiples), "random_search.sigma_multiples must be increasing")
    require(
        r.samples >= 2 and r.subspace_samples >= r.n_star and r.samples >= r.n_star >= 1,
        f"random_search: need samples >= n_star={r.n_star} and subspace_samples >= n_star (got {r.samples}, "
        f"{r.subspace_samples})",
    )
    require(
        r.hutchinson_samples >= 2 and r.batch_size >= len(c.data.train_tasks or c.data.tasks) and r.chunk >= 1,
        "random_search: hutchinson_samples >= 2, batch_size >= the number of tasks and chunk >= 1 are needed",
    )
    require(
        not r.widths or FAMILIES[c.family].widths, "random_search.widths is a synthetic-model sweep (family: synthetic)"
    )
    bad = [w for w in r.widths if w < c.model.n_heads or w % c.model.n_heads]
    require(not bad, f"random_search.widths {bad} must be multiples of model.n_heads={c.model.n_heads}")
