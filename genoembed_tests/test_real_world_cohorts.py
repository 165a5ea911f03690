"""Cohorts as users bring them, run end to end through ``runner.materialize_cohort``.

One small simulated cohort (80 subjects, five LD blocks: IL1RL1, PDE4D, the two HLA
class II blocks and 17q21) is written in every shape a user may have it: the original
pipeline's layout without ``subjects.tsv``, PLINK 1 and 2, VCF, phenotype tables keyed
``IID`` or ``FID IID``, PLINK ``.pheno``/``.cov``, no phenotypes at all, a block the
cohort lacks, a block QC empties, subjects missing from the phenotype table, missing
trait values, two formats in one folder with ``cohort.json`` choosing. Each must
succeed (fast presets), and each case asserts what the user gets: the files, the
subject order source recorded, the skipped notes and the WARN checks.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from genoembed_assets.defs.resources import ComputeResource, GenoembedStorage
from genoembed_assets.genotypes.layout import BlockArray, write_cohort
from genoembed_assets.runner import fast_run_config, materialize_cohort

from .fixtures_genotypes import Cohort, write_eigenvec, write_fam, write_pgen, write_plink, write_vcf

pytestmark = pytest.mark.slow

BLOCKS = ["chr2_b0059", "chr5_b0034", "chr6_b0025", "chr6_b0026", "chr17_b0022"]
LOCUS_BLOCK = "chr17_b0022"  # 17q21
SPARE_BLOCK = "chr9_b0005"  # written emptied by QC (monomorphic / all missing) where a case asks
N_SUBJECTS = 80
UNPHENOTYPED = np.arange(N_SUBJECTS) % 10 == 3  # a tenth of the subjects lack a phenotype row
NO_IGE, NO_FEV1 = np.arange(N_SUBJECTS) % 7 == 0, np.arange(N_SUBJECTS) % 11 == 0  # trait values missing
ANALYSES = ["block_features", "subject_clusters", "block_drivers", "leave_region_out", "phenotype_associations",
            "locus_validation", "embedding_geometry", "findings_summary"]


@dataclass
class Base:
    """The simulated cohort every case is written from."""

    cohort: Cohort  # genotypes of BLOCKS + SPARE_BLOCK, sites in genomic order
    phenotypes: pd.DataFrame  # subject_id, age, sex, ige, eosinophils, fev1, exacerbations
    spans: dict  # block -> (chrom, start, end)

    @property
    def ids(self) -> list[str]:
        return self.cohort.subject_ids

    def subset(self, blocks: list[str], *, emptied: str | None = None) -> Cohort:
        """The cohort restricted to ``blocks``; ``emptied``: a block set to 0 (monomorphic) or -1 ("missing:<id>")."""
        keep = [j for j, b in enumerate(self.cohort.block) if b in blocks]
        g = self.cohort.genotypes[:, keep].copy()
        block = [self.cohort.block[j] for j in keep]
        if emptied:
            value, target = (-1, emptied.split(":", 1)[1]) if emptied.startswith("missing:") else (0, emptied)
            g[:, [i for i, b in enumerate(block) if b == target]] = value
        pick = lambda values: [values[j] for j in keep]  # noqa: E731
        return Cohort(g, list(self.cohort.subject_ids), pick(self.cohort.chrom), self.cohort.pos[keep], block,
                      pick(self.cohort.ids), pick(self.cohort.ref), pick(self.cohort.alt), self.cohort.population)

    def arrays(self, blocks: list[str]) -> list[BlockArray]:
        c = self.subset(blocks)
        return [BlockArray(b, *self.spans[b], c.genotypes[:, [j for j, x in enumerate(c.block) if x == b]]) for b in blocks]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Base:
    from genoembed_assets.genotypes.simulate import SimulationConfig, simulate_cohort

    folder = tmp_path_factory.mktemp("sim") / "sim"
    simulate_cohort(folder, config=SimulationConfig(n_subjects=N_SUBJECTS, n_background_blocks=0, seed=7))
    manifest = pd.read_csv(folder / "manifest.tsv", sep="\t", dtype={"chrom": str}).set_index("block_id")
    variants = pd.read_csv(folder / "variants.tsv", sep="\t", dtype={"chrom": str})
    ids = list(pd.read_csv(folder / "subjects.tsv", sep="\t", dtype=str)["subject_id"])
    order = sorted(BLOCKS + [SPARE_BLOCK], key=lambda b: (int(manifest.at[b, "chrom"]), int(manifest.at[b, "start"])))
    parts, rows = [], []
    for b in order:
        parts.append(np.load(folder / manifest.at[b, "file"]))
        rows.append(variants[variants["block_id"] == b])
    sites = pd.concat(rows, ignore_index=True)
    cohort = Cohort(np.concatenate(parts, axis=1).astype(np.int8), ids, list(sites["chrom"]), sites["pos"].to_numpy(np.int64),
                    list(sites["block_id"]), [v.replace(":", "_") for v in sites["variant_id"]], list(sites["ref"]),
                    list(sites["alt"]), np.zeros(len(ids), dtype=int))
    spans = {b: (str(manifest.at[b, "chrom"]), int(manifest.at[b, "start"]), int(manifest.at[b, "end"])) for b in order}
    phenotypes = pd.read_csv(folder / "phenotypes.csv", dtype={"subject_id": str})
    return Base(cohort, phenotypes, spans)


# ------------------------------------------------------------------ how users bring cohorts


def traits_keyed(base: Base, column: str, fid: bool = False) -> pd.DataFrame:
    table = base.phenotypes.rename(columns={"subject_id": column})
    if fid:
        table.insert(0, "FID", [f"F{s}" for s in base.ids])
    return table


def plink_text(base: Base, columns: list[str], frame: pd.DataFrame | None = None) -> str:
    """A PLINK whitespace table ``FID IID <columns>`` with -9 for missing."""
    frame = base.phenotypes if frame is None else frame
    rows = [" ".join(["FID", "IID", *columns])]
    for _, r in frame.iterrows():
        rows.append(" ".join([f"F{r['subject_id']}", r["subject_id"], *("-9" if pd.isna(r[c]) else f"{r[c]:g}" for c in columns)]))
    return "\n".join(rows) + "\n"


def original_full(base, folder):  # the layout genoembed writes: manifest, subjects.tsv, phenotypes.csv, .eigenvec
    write_cohort(folder, base.ids, base.arrays(BLOCKS), base.phenotypes, settings={"build": "hg19"})
    write_eigenvec(folder / "pcs.eigenvec", base.ids, n_pcs=10, header="#FID IID")


def original_without_subjects_fam(base, folder):  # the original pipeline: no subjects.tsv, a .fam gives the order
    write_cohort(folder, base.ids, base.arrays(BLOCKS), base.phenotypes)
    (folder / "subjects.tsv").unlink()
    write_fam(folder / "study.fam", base.ids)


def original_without_subjects_eigenvec(base, folder):  # ... or a PLINK 1.9 .eigenvec (FID IID PC1.., no header)
    write_cohort(folder, base.ids, base.arrays(BLOCKS), base.phenotypes)
    (folder / "subjects.tsv").unlink()
    write_eigenvec(folder / "study.eigenvec", base.ids, n_pcs=10)


def plink_iid_csv(base, folder):
    write_plink(folder, base.subset(BLOCKS))
    traits_keyed(base, "IID").to_csv(folder / "phenotypes.csv", index=False)


def plink_fid_iid_table(base, folder):
    write_plink(folder, base.subset(BLOCKS))
    traits_keyed(base, "IID", fid=True).to_csv(folder / "phenotypes.tsv", sep="\t", index=False)


def plink_pheno_and_cov(base, folder):
    write_plink(folder, base.subset(BLOCKS))
    (folder / "study.pheno").write_text(plink_text(base, ["ige", "fev1", "exacerbations"]))
    (folder / "study.cov").write_text(plink_text(base, ["age", "sex"]))


def pgen_plink2(base, folder):
    write_pgen(folder, base.subset(BLOCKS))
    traits_keyed(base, "#IID").to_csv(folder / "phenotypes.tsv", sep="\t", index=False)


def vcf_sample_id(base, folder):
    write_vcf(folder, base.subset(BLOCKS))
    traits_keyed(base, "sample_id").to_csv(folder / "phenotypes.csv", index=False)


def genotype_only(base, folder):
    write_plink(folder, base.subset(BLOCKS))


def no_17q21_block(base, folder):
    write_plink(folder, base.subset([b for b in BLOCKS if b != LOCUS_BLOCK]))
    traits_keyed(base, "IID").to_csv(folder / "phenotypes.csv", index=False)


def monomorphic_block(base, folder):
    write_plink(folder, base.subset(BLOCKS + [SPARE_BLOCK], emptied=SPARE_BLOCK))
    traits_keyed(base, "IID").to_csv(folder / "phenotypes.csv", index=False)


def all_missing_block_vcf(base, folder):
    write_vcf(folder, base.subset(BLOCKS + [SPARE_BLOCK], emptied=f"missing:{SPARE_BLOCK}"))
    base.phenotypes.to_csv(folder / "phenotypes.csv", index=False)


def tenth_of_subjects_unphenotyped(base, folder):
    write_plink(folder, base.subset(BLOCKS))
    table = traits_keyed(base, "IID")
    table[~UNPHENOTYPED].to_csv(folder / "phenotypes.csv", index=False)


def missing_trait_values(base, folder):
    write_plink(folder, base.subset(BLOCKS))
    frame = base.phenotypes.copy()
    frame.loc[NO_IGE, "ige"] = np.nan
    frame.loc[NO_FEV1, "fev1"] = np.nan
    (folder / "study.pheno").write_text(plink_text(base, ["ige", "fev1", "age", "sex"], frame))


def two_formats_cohort_json(base, folder):
    write_vcf(folder, base.subset(BLOCKS))
    write_pgen(folder, base.subset(BLOCKS))
    (folder / "cohort.json").write_text(json.dumps({"format": "pgen", "build": "hg19"}))
    traits_keyed(base, "IID").to_csv(folder / "phenotypes.csv", index=False)


@dataclass
class Expect:
    """What the user gets."""

    format: str
    order_source: str
    blocks: list[str] = field(default_factory=lambda: list(BLOCKS))
    skipped_blocks: list[str] = field(default_factory=list)
    traits: bool = True  # False: genotype-only, association and locus skipped "no phenotypes"
    locus_skipped: str | None = None  # a fragment of locus_validation's skipped note
    warns: list[str] = field(default_factory=list)  # fragments of WARN checks that did not pass
    complete_cases: dict = field(default_factory=dict)  # trait -> subjects tested


CASES: list[tuple[Callable, Expect]] = [
    (original_full, Expect("original", "subjects.tsv")),
    (original_without_subjects_fam, Expect("original", "study.fam")),
    (original_without_subjects_eigenvec, Expect("original", "study.eigenvec")),
    (plink_iid_csv, Expect("plink", "cohort.fam")),
    (plink_fid_iid_table, Expect("plink", "cohort.fam")),
    (plink_pheno_and_cov, Expect("plink", "cohort.fam")),
    (pgen_plink2, Expect("plink2", "cohort.psam")),
    (vcf_sample_id, Expect("vcf", "cohort.vcf")),
    (genotype_only, Expect("plink", "cohort.fam", traits=False)),
    (no_17q21_block, Expect("plink", "cohort.fam", blocks=[b for b in BLOCKS if b != LOCUS_BLOCK],
                            locus_skipped="the cohort has no block in 17q21")),
    (monomorphic_block, Expect("plink", "cohort.fam", skipped_blocks=[SPARE_BLOCK])),
    (all_missing_block_vcf, Expect("vcf", "cohort.vcf", skipped_blocks=[SPARE_BLOCK])),
    (tenth_of_subjects_unphenotyped, Expect("plink", "cohort.fam", warns=["phenotypes_cover_subjects"],
                                            complete_cases={"ige": int((~UNPHENOTYPED).sum())})),
    (missing_trait_values, Expect("plink", "cohort.fam", complete_cases={"ige": int((~NO_IGE).sum()), "fev1": int((~NO_FEV1).sum())})),
    (two_formats_cohort_json, Expect("plink2", "cohort.psam")),
]


# fast presets, shortened further: these cases check what the user gets, not how well the models fit
RUN_CONFIG = fast_run_config()
RUN_CONFIG["ops"]["block_embeddings"]["config"].update(max_epochs=10)
RUN_CONFIG["ops"]["cross_block_embeddings"]["config"].update(epochs=8, seeds=[0, 1])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("real_world")
    storage = GenoembedStorage(cohorts_root=str(root / "cohorts"), results_root=str(root / "results"))
    (root / "home").mkdir()
    with dg.instance_for_test(temp_dir=str(root / "home")) as instance:
        yield storage, instance


def cohort_name(case: Callable) -> str:
    return case.__name__.replace("_", "-")[:60]


@pytest.mark.parametrize("case,expect", CASES, ids=[c.__name__ for c, _ in CASES])
def test_real_world_cohort_runs_end_to_end(base, workspace, case, expect):
    storage, instance = workspace
    name = cohort_name(case)
    folder = Path(storage.cohorts_root) / name
    case(base, folder)
    lines: list[str] = []
    stages = materialize_cohort(name, instance=instance, resources={"storage": storage, "compute": ComputeResource(device="cpu")},
                                run_config=RUN_CONFIG, log=lines.append)
    assert [s.name for s in stages] == ["cohort inputs", "blocks", "cohort analyses"]
    out = storage.cohort_dir(name)

    # inputs: the format, where the subject order came from, the blocks kept and skipped
    qc = json.loads((out / "input" / "qc.json").read_text())
    assert qc["format"] == expect.format
    assert Path(qc["subject_order_source"]).name == expect.order_source
    assert [b["block_id"] for b in qc["skipped_blocks"]] == expect.skipped_blocks
    manifest = pd.read_csv(out / "input" / "manifest.tsv", sep="\t")
    assert list(manifest["block_id"]) == expect.blocks
    subjects = pd.read_csv(out / "input" / "subjects.tsv", sep="\t", dtype=str)["subject_id"]
    assert list(subjects) == base.ids

    # Phase 1 per kept block, Phase 2 per subject, every analysis with its table, summary and figure
    for block in expect.blocks:
        assert (out / "phase1" / block / "embedding.parquet").exists(), block
    for block in expect.skipped_blocks:
        assert not (out / "phase1" / block / "embedding.parquet").exists(), block
    assert len(pd.read_parquet(out / "phase2" / "subject_embeddings.parquet")) == N_SUBJECTS
    for analysis in ANALYSES:
        for suffix in (".parquet", ".json", ".png"):
            assert (out / "analysis" / f"{analysis}{suffix}").exists(), f"{analysis}{suffix}"

    association = json.loads((out / "analysis" / "phenotype_associations.json").read_text())
    locus = json.loads((out / "analysis" / "locus_validation.json").read_text())
    summary = json.loads((out / "analysis" / "findings_summary.json").read_text())
    if not expect.traits:
        assert association == {"status": "skipped", "skipped": "no phenotypes"}
        assert locus == {"status": "skipped", "skipped": "no phenotypes"}
        assert "Phenotype association:** skipped (no phenotypes)" in summary["markdown"]
    else:
        assert association.get("status") != "skipped" and association["n_tests"] > 0
        table = pd.read_parquet(out / "analysis" / "phenotype_associations.parquet")
        for trait, n in expect.complete_cases.items():  # complete cases per trait
            assert set(table.loc[table["phenotype"] == trait, "n"]) == {n}, trait
    if expect.locus_skipped:
        assert locus["status"] == "skipped" and expect.locus_skipped in locus["skipped"]
        assert "Locus validation:** skipped" in summary["markdown"]
    elif expect.traits:
        assert locus.get("status") != "skipped" and LOCUS_BLOCK in locus["locus_blocks"]
    assert summary["leading_block"] in expect.blocks

    warned = [w for s in stages for w in s.warned_checks]
    for fragment in expect.warns:
        assert any(fragment in w for w in warned), (fragment, warned)
    # the skipped results are recorded in the instance too: metadata 'skipped', checks passed
    if not expect.traits or expect.locus_skipped:
        key = "phenotype_associations" if not expect.traits else "locus_validation"
        record = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(key), asset_partitions=[name]),
                                                 limit=1).records[0]
        assert "skipped" in record.asset_materialization.metadata
    shutil.rmtree(out / "phase1")  # keep the module's disk use small
