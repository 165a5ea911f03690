"""The Dagster UI, in headless chromium (Playwright), against the live ``dagster dev``.

The session's live deployment (see live_dagster.py) holds the demo cohort's whole
graph, materialized. Screenshots go to ``test-artifacts/`` (gitignored); the graph
screenshot is also written to ``docs/images/asset_graph.png`` for the README when
``GENOEMBED_UPDATE_DOCS_IMAGES=1``.
"""

import os
import tempfile
from pathlib import Path

import dagster as dg
import pytest

from genoembed_tests.live_dagster import PROJECT_ROOT, LiveSession, live_session

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
DOCS_IMAGE = PROJECT_ROOT / "docs" / "images" / "asset_graph.png"
UI_TIMEOUT_MS = 120_000


@pytest.fixture(scope="session")
def live(request) -> LiveSession:
    return live_session(request)


@pytest.fixture(scope="module")
def browser_context():
    from playwright.sync_api import sync_playwright

    assert Path(CHROMIUM).exists(), "chromium is not installed: run `bash .ci/system-deps.sh` (make test does)"
    ARTIFACTS.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="genoembed_chromium_") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, viewport={"width": 1600, "height": 1000},
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        yield context
        context.close()


@pytest.fixture
def page(browser_context):
    page = browser_context.new_page()
    yield page
    page.close()


def open_page(page, live: LiveSession, path: str) -> None:
    page.goto(live.dagster.url + path, wait_until="domcontentloaded")
    skip = page.get_by_role("button", name="Skip")  # the first-visit community dialog
    try:
        skip.wait_for(state="visible", timeout=5_000)
        skip.click()
    except Exception:  # not shown (already dismissed in this profile)
        pass


# ------------------------------------------------------------------ what to look for


def graph():
    from genoembed_assets.definitions import defs

    return defs.resolve_asset_graph()


def pick_assets() -> dict[str, str]:
    """A block-level asset, a subject-level one and an analysis, from the definitions."""
    from genoembed_assets.defs.automation.cohorts import graph_stages

    g = graph()
    stages = graph_stages(g)
    names = [k.to_user_string() for k in stages.blocks]
    block = "block_embeddings" if "block_embeddings" in names else names[0]
    downstream = [k.to_user_string() for k in stages.downstream]
    subject = next((n for n in ("subject_embeddings", "subject_embedding") if n in downstream), None) or \
        next(n for n in downstream if n.startswith("subject"))
    analysis = next(k.to_user_string() for k in stages.downstream if g.get(k).group_name == "analysis"
                    and k.to_user_string() != subject)
    return {"block": block, "subject": subject, "analysis": analysis}


_GRAPH_JS = """() => {
  const nodes = {};
  for (const fo of document.querySelectorAll('svg foreignObject')) {
    const name = fo.querySelector('[class*="AssetNode_assetName"], [class*="AssetNode_name"]');
    if (!name) continue;
    nodes[name.textContent.trim()] = [+fo.getAttribute('x'), +fo.getAttribute('y'), +fo.getAttribute('width'), +fo.getAttribute('height')];
  }
  const edges = [];
  for (const p of document.querySelectorAll('svg path[stroke*="lineage-edge"]')) {
    const nums = (p.getAttribute('d') || '').match(/-?[0-9.]+/g);
    if (nums && nums.length >= 4) edges.push(nums.slice(0, 2).concat(nums.slice(-2)).map(Number));
  }
  return {nodes, edges};
}"""


def drawn_edge(layout: dict, parent: str, child: str, slack: float = 60) -> bool:
    """Whether an edge leaves ``parent``'s box and arrives at ``child``'s box."""
    (px, py, pw, ph), (cx, cy, cw, ch) = layout["nodes"][parent], layout["nodes"][child]
    for x1, y1, x2, y2 in layout["edges"]:
        leaves = px - slack <= x1 <= px + pw + slack and py - slack <= y1 <= py + ph + slack
        arrives = cx - slack <= x2 <= cx + cw + slack and cy - slack <= y2 <= cy + ch + slack
        if leaves and arrives:
            return True
    return False


# ------------------------------------------------------------------ tests


def test_asset_graph_shows_block_subject_and_analysis_assets_with_lineage(live, page):
    chosen = pick_assets()
    open_page(page, live, f"/assets/{chosen['block']}?view=lineage&lineageScope=downstream&lineageDepth=6")
    for name in chosen.values():
        page.locator('[class*="AssetNode_assetName"]', has_text=name).first.wait_for(state="visible")
    page.wait_for_timeout(1_000)  # edges are drawn after the layout settles
    page.screenshot(path=str(ARTIFACTS / "asset_graph.png"))
    layout = page.evaluate(_GRAPH_JS)
    assert set(chosen.values()) <= set(layout["nodes"]), layout["nodes"].keys()

    # every parent -> child relation of the definitions between displayed nodes is drawn
    g = graph()
    shown = set(layout["nodes"])
    pairs = [(p.to_user_string(), k.to_user_string()) for k in g.get_all_asset_keys() if k.to_user_string() in shown
             for p in g.get(k).parent_keys if p.to_user_string() in shown]
    assert pairs
    missing = [pair for pair in pairs if not drawn_edge(layout, *pair)]
    assert missing == []
    # the block asset reaches the subject asset and the analysis through drawn edges
    assert any(parent == chosen["block"] for parent, _ in pairs)

    if os.environ.get("GENOEMBED_UPDATE_DOCS_IMAGES") == "1" or not DOCS_IMAGE.exists():
        DOCS_IMAGE.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOCS_IMAGE), type="png")
        assert DOCS_IMAGE.stat().st_size < 500_000


def test_block_asset_page_lists_partitions_and_status(live, page):
    block = "block_genotypes"
    with live.instance() as instance:
        blocks = instance.get_dynamic_partitions("blocks")
        done = instance.get_materialized_partitions(dg.AssetKey(block))
    demo_keys = {k for k in done if k.endswith("|demo")}
    assert demo_keys, "the demo cohort's blocks should be materialized"
    open_page(page, live, f"/assets/{block}?view=partitions")
    page.get_by_text(f"Materialized ({len(done)})").first.wait_for(state="visible")
    body = page.inner_text("body")
    for b in blocks[:5]:
        assert b in body
    assert "demo" in body
    page.screenshot(path=str(ARTIFACTS / "block_partitions.png"))


def test_materialized_analysis_shows_its_figure_preview(live, page):
    chosen = pick_assets()
    open_page(page, live, f"/assets/{chosen['analysis']}?view=events&partition=demo")
    # the latest materialization's metadata: Markdown entries (tables, the figure preview) open in a dialog
    buttons = page.get_by_text("[Show Markdown]")
    buttons.first.wait_for(state="visible")
    image = page.locator('img[src^="data:image/png;base64,"]').first
    for i in range(buttons.count()):
        buttons.nth(i).click()
        try:
            image.wait_for(state="visible", timeout=5_000)
            break
        except Exception:  # a table, not the figure: close and try the next entry
            page.get_by_role("button", name="Close").click()
    assert image.is_visible(), "no figure preview among the Markdown metadata entries"
    assert image.bounding_box()["width"] > 100
    assert len(image.get_attribute("src")) > 1_000
    page.screenshot(path=str(ARTIFACTS / "analysis_figure.png"))
