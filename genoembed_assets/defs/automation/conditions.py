"""When Phase 2 and the analyses run by themselves: after every block partition of their cohort.

They are cohort-partitioned and read every block partition of their cohort through
``MultiToSingleDimensionPartitionMapping`` (``all_blocks_of_cohort``). Declarative
automation evaluates a dep condition over *all* the block partitions mapped to the
cohort, so

* ``~any_deps_missing`` holds only when every ``(cohort, block)`` partition was
  materialized (a block the cohort lacks, or one QC emptied, is materialized as
  absent by the block assets, so it counts);
* ``~any_deps_in_progress`` holds only when none of them is in a queued or running
  run (block runs of one cohort may be several range runs, started one by one);
* ``~any_deps_match(execution_failed)`` holds only when the latest run of each of
  them did not fail (a failed block is rerun first, instead of Phase 2 failing on a
  missing embedding).

:data:`AFTER_EVERY_BLOCK` is ``eager()`` with the third gate added (the first two are
part of ``eager()``): an update of any dependency requests the asset once the whole
cohort is ready, and nothing is requested while part of it is pending.
"""

import dagster as dg

__all__ = ["AFTER_EVERY_BLOCK"]

AFTER_EVERY_BLOCK = (
    dg.AutomationCondition.eager()
    & ~dg.AutomationCondition.any_deps_match(dg.AutomationCondition.execution_failed()).with_label("any_deps_failed")
).with_label("eager, after every block partition of the cohort")
