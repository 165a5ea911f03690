"""The progress display reads progress from the training code's own log lines."""

import pytest

from genoembed_assets.progress import ProgressDisplay, parse_progress


@pytest.mark.parametrize("line,kind,fields", [
    ("Phase 1 on cpu: 9 block partition(s), preset 'fast'", "blocks_total", {"n": "9"}),
    ("demo: 3 block(s) already trained with this input and config, not retrained", "blocks_resumed", {"n": "3"}),
    ("demo/chr6_b0025: held-out accuracy 0.758 (mode baseline 0.670), 8 active units", "block_done",
     {"cohort": "demo", "block": "chr6_b0025"}),
    ("group 2/5 epoch 7/30: train 94.254 val 91.201 beta 1.000", "group_epoch",
     {"group": "2", "groups": "5", "epoch": "7", "epochs": "30"}),
    ("seed 1 epoch 4: train 0.9 val 1.0 (0.3s)", "seed_epoch", {"seed": "1", "epoch": "4"}),
])
def test_progress_lines_are_parsed(line, kind, fields):
    assert parse_progress(line) == (kind, fields)


def test_other_lines_are_not_progress():
    assert parse_progress("ingesting cohort 'demo' from /data/demo") is None
    assert parse_progress("demo: k=2 sizes [79, 71] silhouette 0.276") is None


def test_display_is_quiet_when_disabled(capsys):
    with ProgressDisplay(enabled=False) as progress:
        progress.stage("blocks", 2, 3, ["block_embeddings"])
        progress.step_started("block_embeddings")
        progress.message("block_embeddings", "Phase 1 on cpu: 2 block partition(s)")
        progress.message("block_embeddings", "group 1/1 epoch 1/3: train 1")
        progress.step_finished("block_embeddings")
    assert capsys.readouterr().out == ""


def test_display_follows_a_stage(capsys):
    with ProgressDisplay(enabled=True) as progress:
        progress.stage("blocks", 2, 3, ["block_embeddings", "block_genotypes"])
        progress.step_started("block_embeddings")
        progress.message("block_embeddings", "Phase 1 on cpu: 2 block partition(s)")
        progress.message("block_embeddings", "group 1/1 epoch 3/3: train 1")
        progress.message("block_embeddings", "c/b1: held-out accuracy 0.9")
        progress.message("block_embeddings", "c/b2: held-out accuracy 0.9")
        tasks = {t.description.split(" (")[0]: t for t in progress._progress.tasks}
        assert tasks["blocks"].completed == 2 and tasks["blocks"].total == 2
        assert "epoch 3/3" in tasks["blocks"].description
        progress.step_finished("block_embeddings")
    assert "[2/3] blocks" in capsys.readouterr().out
