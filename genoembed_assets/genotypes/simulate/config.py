"""The simulation parameters: one frozen dataclass, every default stated once.

:class:`SimulationConfig` holds what defines a simulated cohort (demography,
size, blocks, planted structure, eigenvec source); run options that do not
change the cohort (threads, overwrite) stay arguments of ``simulate_cohort``.
:data:`DEMOGRAPHIES` lists the stdpopsim HomSap models the simulator knows,
with the populations it samples and their default shares.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal, Mapping

__all__ = [
    "DEFAULT_POPULATION_FRACTIONS",
    "DEMOGRAPHIES",
    "DEMO_SEED",
    "EIGENVEC_SOURCES",
    "GENOME_PRESET",
    "WHOLE_MAP",
    "Demography",
    "SimulationConfig",
    "genome_config",
]

DEMO_SEED = 20261121
# ``n_background_blocks`` value meaning "every block of the map besides the loci (and LD partners)".
WHOLE_MAP = -1
EIGENVEC_SOURCES = ("panel", "own", "none")
WEAK_BLOCKS = ("PDE4D_1", "PDE4D_2")


@dataclass(frozen=True)
class Demography:
    """A stdpopsim HomSap model and how the simulator samples it.

    Attributes
    ----------
    model_id : str
        stdpopsim id (``aliases`` are tried when the installed stdpopsim lacks it).
    sources : tuple of str
        Sampled populations, in the model's order; haplotype pools come from these.
    continents : tuple of str
        AFR, EUR or ASIA per source: picks the planted ancestry shift of each trait.
    default_fractions : mapping
        Default share of subjects per population (sources, plus ``admixed``).
    admixed : str or None
        Name of the admixed population rebuilt per subject, if the model has one.
    admix_mean : tuple of float or None
        Mean admixture fractions over ``sources`` of the admixed population.
    aliases : tuple of str
        Older stdpopsim ids of the same model.
    """

    model_id: str
    sources: tuple[str, ...]
    continents: tuple[str, ...]
    default_fractions: Mapping[str, float]
    admixed: str | None = None
    admix_mean: tuple[float, ...] | None = None
    aliases: tuple[str, ...] = ()

    @property
    def populations(self) -> tuple[str, ...]:
        return (*self.sources, self.admixed) if self.admixed else self.sources


DEMOGRAPHIES: dict[str, Demography] = {
    d.model_id: d
    for d in (
        # Browning et al. 2018: the ADMIX population is 1/6 AFR, then 40% of the rest EUR, the remainder ASIA.
        Demography("AmericanAdmixture_4B18", ("AFR", "EUR", "ASIA"), ("AFR", "EUR", "ASIA"),
                   {"AFR": 0.2, "EUR": 0.4, "ASIA": 0.2, "ADMIX": 0.2},
                   admixed="ADMIX", admix_mean=(1 / 6, 1 / 3, 1 / 2), aliases=("AmericanAdmixture_4B11",)),
        Demography("OutOfAfrica_3G09", ("YRI", "CEU", "CHB"), ("AFR", "EUR", "ASIA"),
                   {"YRI": 0.3, "CEU": 0.4, "CHB": 0.3}),
        Demography("OutOfAfrica_2T12", ("AFR", "EUR"), ("AFR", "EUR"), {"AFR": 0.4, "EUR": 0.6}),
        Demography("OutOfAfrica_4J17", ("YRI", "CEU", "CHB", "JPT"), ("AFR", "EUR", "ASIA", "ASIA"),
                   {"YRI": 0.25, "CEU": 0.25, "CHB": 0.25, "JPT": 0.25}),
        Demography("Africa_1T12", ("AFR",), ("AFR",), {"AFR": 1.0}),
    )
}
DEFAULT_POPULATION_FRACTIONS = dict(DEMOGRAPHIES["AmericanAdmixture_4B18"].default_fractions)


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a simulated cohort; the defaults are the demo.

    Validated on construction (``ValueError`` naming the field and the allowed
    values). ``population_fractions=None`` means the demography's default
    shares. See the package docstring for what each field does.
    """

    n_subjects: int = 1200
    n_background_blocks: int = 24
    seed: int = DEMO_SEED
    demography: str = "AmericanAdmixture_4B18"
    population_fractions: Mapping[str, float] | None = None
    max_variants: int = 160
    min_variants: int = 40
    min_maf: float = 0.02
    missing_rate: float = 0.005
    strong_weight: float = 0.85
    weak_weight: float = 0.45
    weak_block: Literal["PDE4D_1", "PDE4D_2"] = "PDE4D_1"
    stratum_strength: float = 1.0
    inter_block_ld: float = 0.0
    ld_partners_per_side: int = 1
    eigenvec_source: Literal["panel", "own", "none"] = "panel"
    sim_length: int = 100_000
    pool_factor: float = 1.5
    n_pc_snps: int = 4000
    lineage_tags: int = 6
    balanced_groups: bool = False
    _fractions: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.validate()
        given = self.population_fractions
        object.__setattr__(self, "_fractions", dict(self.demography_spec.default_fractions if given is None else given))

    # ------------------------------------------------------------------ derived

    @property
    def demography_spec(self) -> Demography:
        return DEMOGRAPHIES[self.demography]

    @property
    def fractions(self) -> dict[str, float]:
        """Share of subjects per population (the given ones or the model's default)."""
        return dict(self._fractions)

    @property
    def has_strata(self) -> bool:
        """Whether any stratum is planted (``stratum_strength > 0`` and a weight > 0)."""
        return self.stratum_strength > 0 and (self.strong_weight > 0 or self.weak_weight > 0)

    def structure_weights(self) -> dict[str, float]:
        """Locus key -> probability of drawing from the subject's stratum group; empty without strata."""
        if not self.has_strata:
            return {}
        strong = self.strong_weight * self.stratum_strength
        return {"HLA_DRDQ": strong, "HLA_DP": strong, self.weak_block: self.weak_weight * self.stratum_strength}

    @property
    def ld_partner_weight(self) -> float:
        """Stratum weight of the blocks beside the HLA class II blocks (0: they are not simulated)."""
        return self.inter_block_ld * self.strong_weight * self.stratum_strength

    def to_dict(self) -> dict:
        """The fields as plain JSON-able values (``population_fractions`` resolved)."""
        out = asdict(self)
        out.pop("_fractions")
        out["population_fractions"] = self.fractions
        return out

    # ------------------------------------------------------------------ checks

    def validate(self) -> None:
        """Raise ``ValueError`` on the first field out of range (called on construction)."""
        if self.demography not in DEMOGRAPHIES:
            raise ValueError(f"demography must be one of {sorted(DEMOGRAPHIES)}, got {self.demography!r}")
        if self.eigenvec_source not in EIGENVEC_SOURCES:
            raise ValueError(f"eigenvec_source must be one of {list(EIGENVEC_SOURCES)}, got {self.eigenvec_source!r}")
        if self.weak_block not in WEAK_BLOCKS:
            raise ValueError(f"weak_block must be one of {list(WEAK_BLOCKS)}, got {self.weak_block!r}")
        allowed = self.demography_spec.populations
        given = self.population_fractions
        if given is not None:
            given = dict(given)
            if (set(given) - set(allowed) or not given or any(v < 0 for v in given.values())
                    or sum(given.values()) <= 0):
                raise ValueError(f"population_fractions must map some of {list(allowed)} ({self.demography}) "
                                 f"to non-negative shares, got {given}")
        if self.n_subjects < 30:
            raise ValueError(f"n_subjects must be >= 30, got {self.n_subjects}")
        if self.n_background_blocks < WHOLE_MAP:
            raise ValueError(f"n_background_blocks must be >= 0, or {WHOLE_MAP} for every block of the map, "
                             f"got {self.n_background_blocks}")
        if not 0 <= self.missing_rate < 0.5:
            raise ValueError(f"missing_rate must be in [0, 0.5), got {self.missing_rate}")
        if not 0 < self.min_maf < 0.5:
            raise ValueError(f"min_maf must be in (0, 0.5), got {self.min_maf}")
        if not (0 <= self.weak_weight <= 1 and 0 <= self.strong_weight <= 1):
            raise ValueError(f"strong_weight and weak_weight must be in [0, 1], got {self.strong_weight}, {self.weak_weight}")
        if self.stratum_strength < 0 or max(self.strong_weight, self.weak_weight) * self.stratum_strength > 1:
            raise ValueError(f"stratum_strength must be in [0, {1 / max(self.strong_weight, self.weak_weight, 1e-9):.4g}] "
                             f"(strong_weight x stratum_strength is a probability), got {self.stratum_strength}")
        if not 0 <= self.inter_block_ld <= 1:
            raise ValueError(f"inter_block_ld must be in [0, 1], got {self.inter_block_ld}")
        if self.inter_block_ld > 0 and not self.has_strata:
            raise ValueError("inter_block_ld > 0 needs planted strata (stratum_strength > 0): "
                             "the partner blocks share the subject stratum")
        if self.ld_partners_per_side not in (1, 2):
            raise ValueError(f"ld_partners_per_side must be one of [1, 2], got {self.ld_partners_per_side}")
        if (self.max_variants < 2 or self.min_variants < 1 or self.sim_length < 1000 or self.pool_factor < 1
                or self.lineage_tags < 0 or self.n_pc_snps < 0):
            raise ValueError("need max_variants >= 2, min_variants >= 1, sim_length >= 1000, pool_factor >= 1, "
                             "lineage_tags >= 0, n_pc_snps >= 0")
        if self.eigenvec_source == "panel" and self.n_pc_snps < 10:
            raise ValueError(f"eigenvec_source 'panel' needs n_pc_snps >= 10, got {self.n_pc_snps}")


#: The genome-wide cohort (issue 12): every block of the hg19 map (1,703), 2,000
#: subjects, array-like density (50-300 variants per block), the demo's planted truth.
GENOME_PRESET: dict = {"n_subjects": 2000, "n_background_blocks": WHOLE_MAP, "min_variants": 50, "max_variants": 300}


def genome_config(**fields) -> SimulationConfig:
    """:data:`GENOME_PRESET` with any :class:`SimulationConfig` field replaced (``n_subjects=60``)."""
    return SimulationConfig(**{**GENOME_PRESET, **fields})
