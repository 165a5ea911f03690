"""Time a Dagster UI page in headless chromium until its content is rendered (bench_genome.py, stage ``ui``).

Same browser and launch arguments as ``genoembed_tests/test_ui_browser.py``. One
untimed load first (it fetches the UI bundle and dismisses the first-visit
dialog); then each timed load is a new page in the same browser profile, from
``goto`` until the partition list shows the asset's materialized count and the
first block key.
"""

from __future__ import annotations

import statistics
import tempfile
import time


def time_partitions_page(url: str, asset: str, first_block: str, n_materialized: int, *, repeats: int = 3,
                         timeout_ms: int = 600_000) -> dict:
    """Seconds until ``/assets/<asset>?view=partitions`` lists its partitions, per load, and their median."""
    from playwright.sync_api import sync_playwright

    from genoembed_tests.test_ui_browser import CHROMIUM, CHROMIUM_ARGS

    path = f"{url}/assets/{asset}?view=partitions"
    loads = []
    with tempfile.TemporaryDirectory(prefix="genoembed_bench_chromium_") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, headless=True,
                                                       args=CHROMIUM_ARGS, viewport={"width": 1600, "height": 1000})
        context.set_default_timeout(timeout_ms)
        try:
            for i in range(repeats + 1):
                page = context.new_page()
                started = time.perf_counter()
                page.goto(path, wait_until="domcontentloaded")
                if i == 0:
                    skip = page.get_by_role("button", name="Skip")  # the first-visit community dialog
                    try:
                        skip.wait_for(state="visible", timeout=10_000)
                        skip.click()
                    except Exception:
                        pass
                page.get_by_text(f"Materialized ({n_materialized})").first.wait_for(state="visible")
                page.get_by_text(first_block).first.wait_for(state="visible")
                if i:
                    loads.append(round(time.perf_counter() - started, 2))
                page.close()
        finally:
            context.close()
    return {"loads_s": loads, "median_s": statistics.median(loads) if loads else None}
