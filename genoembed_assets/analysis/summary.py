"""The findings summary: headline rows and a short Markdown text."""

from __future__ import annotations

from typing import Mapping

import pandas as pd

from .features import AnalysisResult, is_skipped

__all__ = ["findings_summary"]


def findings_summary(
    drivers: AnalysisResult,
    leave_out: AnalysisResult,
    association: AnalysisResult | None,
    locus: AnalysisResult | None = None,
    block_labels: Mapping[str, str] | None = None,
) -> AnalysisResult:
    """Collect the headline findings of the other analyses.

    ``association`` and ``locus`` may be None or skipped results (see
    :func:`~genoembed_assets.analysis.features.skipped_result`, e.g. a cohort without
    phenotypes or without the locus): their rows then say ``skipped`` and why.

    Returns
    -------
    AnalysisResult
        ``table``: ``finding, value, detail`` rows. ``summary``: ``leading_block``,
        ``leading_block_after_leave_out``, ``strongest_phenotype``,
        ``strongest_feature``, ``markdown`` (a short paragraph naming the
        leading block).
    """

    def name(block: str | None) -> str:
        genes = (block_labels or {}).get(block or "", "")
        return f"{block} ({genes})" if genes else str(block)

    d, lo = drivers.summary, leave_out.summary
    rows = [
        ("leading_block", d["leading_block"], f"eta2 {d['leading_block_eta2']:.3f} vs best genotype PC {d['top_genotype_pc']} {d['top_genotype_pc_eta2']:.3f}"),
        ("leading_block_after_leave_out", lo["leading_block"], f"eta2 {lo['leading_eta2']:.3f}; ARI old vs new {lo['ari_old_new']:.3f}; dropped {lo['n_dropped']} blocks"),
    ]
    ancestry = "ahead of" if d["leading_block_eta2"] > d["top_genotype_pc_eta2"] else "behind"
    lines = [
        f"**Leading block:** {name(d['leading_block'])}, explaining {d['leading_block_eta2']:.0%} of cluster membership "
        f"({ancestry} the best genotype PC, {d['top_genotype_pc']}, at {d['top_genotype_pc_eta2']:.0%}).",
        f"**Leaving out {', '.join(lo['regions'])}:** {name(lo['leading_block'])} leads (eta2 {lo['leading_eta2']:.2f}); "
        f"ARI between old and new clusters {lo['ari_old_new']:.2f}.",
    ]
    hit: dict = {}
    if association is None or is_skipped(association):
        why = association.summary["skipped"] if association is not None else "not run"
        rows.append(("strongest_association", "skipped", why))
        lines.append(f"**Phenotype association:** skipped ({why}).")
        strongest_phenotype = None
    else:
        a = association.summary
        hit = a["strongest"] or {}
        joint = str(hit.get("test", "wald")).startswith("joint")
        # joint block tests report the share of trait variance (deviance) explained, not a per-SD effect
        size = (f"partial R2 {hit.get('effect', float('nan')):.3f} over {hit.get('df')} latent axes" if joint
                else f"effect {hit.get('effect', float('nan')):.2f} per SD")
        rows += [
            ("strongest_association", f"{hit.get('feature')}:{hit.get('phenotype')}", f"{size}, q {hit.get('q', float('nan')):.2g}"),
            ("strongest_phenotype", a["strongest_phenotype"], f"{a['n_significant']} of {a['n_tests']} tests at q<0.05"),
        ]
        lines.append(
            f"**Strongest association:** {name(hit.get('feature'))} with {hit.get('phenotype')} "
            f"({size}, q = {hit.get('q', float('nan')):.2g}); "
            f"strongest trait: {a['strongest_phenotype']}; {a['n_significant']} of {a['n_tests']} tests at q < 0.05."
        )
        strongest_phenotype = a["strongest_phenotype"]
    if is_skipped(locus):
        rows.append(("locus", "skipped", locus.summary["skipped"]))
        lines.append(f"**Locus validation:** skipped ({locus.summary['skipped']}).")
    elif locus is not None:
        rows.append(("locus", locus.summary["locus"], f"empirical p {locus.summary['empirical_p']:.3g}"))
        lines.append(f"**Locus {locus.summary['locus']}:** empirical p = {locus.summary['empirical_p']:.3g} against matched background blocks.")
    table = pd.DataFrame(rows, columns=["finding", "value", "detail"])
    summary = {
        "leading_block": d["leading_block"],
        "leading_block_after_leave_out": lo["leading_block"],
        "strongest_phenotype": strongest_phenotype,
        "strongest_feature": hit.get("feature"),
        "markdown": "\n\n".join(lines),
    }
    return AnalysisResult(table=table, summary=summary)
