"""The partition scheme (see docs/design.md, "Partitions").

* ``cohorts``: one dynamic key per cohort folder.
* ``blocks``: one dynamic key per LD block id, shared by every cohort on the same
  block map, registered in genomic order so ranges of blocks are contiguous.
* Block-level assets use ``cohort x block`` multi-partitions; keys read
  ``<block>|<cohort>`` (Dagster sorts dimensions by name).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Iterable, Sequence

import dagster as dg

COHORTS = "cohorts"
BLOCKS = "blocks"

cohort_partitions = dg.DynamicPartitionsDefinition(name=COHORTS)
block_partitions = dg.DynamicPartitionsDefinition(name=BLOCKS)
cohort_block_partitions = dg.MultiPartitionsDefinition({"cohort": cohort_partitions, "block": block_partitions})

# One run trains up to this many (cohort, block) keys in one process.
BLOCKS_PER_RUN = 64
block_backfill_policy = dg.BackfillPolicy.multi_run(max_partitions_per_run=BLOCKS_PER_RUN)

# The phase-2 and analysis assets read every block partition of their cohort.
all_blocks_of_cohort = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="cohort")

_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def check_cohort_name(name: str) -> str:
    """Return ``name`` if it is a safe partition key, else raise ValueError saying why."""
    if not _SAFE_KEY.match(name):
        raise ValueError(
            f"cohort folder name {name!r} is not a usable partition key: use 1-64 letters, digits, "
            "'_', '-' or '.', starting with a letter or digit"
        )
    return name


def multi_key(cohort: str, block: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"cohort": cohort, "block": block})


def split_key(key: str | dg.MultiPartitionKey) -> tuple[str, str]:
    """``'<block>|<cohort>'`` -> ``(cohort, block)``."""
    if isinstance(key, dg.MultiPartitionKey):
        dims = key.keys_by_dimension
        return dims["cohort"], dims["block"]
    block, cohort = str(key).split("|")
    return cohort, block


def group_by_cohort(keys: Iterable[str | dg.MultiPartitionKey]) -> dict[str, list[str]]:
    """Group any set of multi keys by cohort (a run may hold several cohorts)."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for key in keys:
        cohort, block = split_key(key)
        grouped[cohort].append(block)
    return dict(grouped)


def run_partition_keys(context) -> list[str]:
    """The partition keys of this run, whether it holds one key or a range."""
    if context.has_partition_key_range:
        return list(context.partition_keys)
    return [context.partition_key]


def register_cohort(instance: dg.DagsterInstance, cohort: str, block_ids: Sequence[str]) -> list[str]:
    """Add the cohort and any new block keys (in the given, genomic order).

    Returns the block ids that were new. Idempotent.
    """
    check_cohort_name(cohort)
    if not instance.has_dynamic_partition(COHORTS, cohort):
        instance.add_dynamic_partitions(COHORTS, [cohort])
    known = set(instance.get_dynamic_partitions(BLOCKS))
    new = [b for b in block_ids if b not in known]
    if new:
        instance.add_dynamic_partitions(BLOCKS, new)
    return new


def cohort_range_tags(instance: dg.DagsterInstance, cohort: str) -> dict[str, str]:
    """Run tags selecting every block key of ``cohort`` as one range."""
    blocks = instance.get_dynamic_partitions(BLOCKS)
    if not blocks:
        raise ValueError("no block partitions registered yet")
    return {
        "dagster/asset_partition_range_start": str(multi_key(cohort, blocks[0])),
        "dagster/asset_partition_range_end": str(multi_key(cohort, blocks[-1])),
    }
