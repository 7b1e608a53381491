"""Screenshot of `lpdgen demo` for the README (docs/demo.png), taken the way a user sees it: the real
server, headless Chromium, a click on Generate. Also times click -> picture over a few clicks.

    python scripts/demo_screenshot.py                 # -> docs/demo.png, prints the click-to-picture times
    python scripts/demo_screenshot.py --clicks 5 --out /tmp/demo.png

Needs `bash scripts/setup.sh` (chromium, chromium-driver, lpdgen[demo-test]). The server runs with one
torch thread (OMP_NUM_THREADS=1), as in the end-to-end test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))  # the browser helpers live beside the end-to-end test that uses them

from demo_browser import browser_missing, demo_server, headless_chromium, wait_for_click, wait_for_image  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "demo.png"), help="the screenshot (.png)")
    parser.add_argument("--clicks", type=int, default=5, help="clicks on Generate to time (the last is shown)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.clicks < 1:
        parser.error(f"--clicks must be >= 1, got {args.clicks}")
    missing = browser_missing()
    if missing:
        parser.error(missing)

    from selenium.webdriver.common.by import By
    from tqdm import tqdm

    from lpdgen.io import atomic_write

    with demo_server("--model", "fmnist-64") as url, headless_chromium(args.width, args.height) as driver:
        driver.get(url)
        button, src, times = wait_for_click(driver, "generate-button"), None, []
        seed = driver.find_element(By.CSS_SELECTOR, "#generate-seed input")
        for i in tqdm(range(args.clicks), desc="click -> picture", unit="click"):
            seed.clear()
            seed.send_keys(str(i))  # a new seed each click: new pictures (the same ones keep their address)
            t0 = time.perf_counter()
            button.click()
            src = wait_for_image(driver, "generate-grid", previous=src)
            times.append(time.perf_counter() - t0)
        wait_for_image(driver, "generate-order")
        wait_for_image(driver, "generate-animation")
        time.sleep(1.0)  # let the last pictures finish drawing
        png = driver.get_screenshot_as_png()
    atomic_write(args.out, lambda tmp: Path(tmp).write_bytes(png))
    print(
        f"click -> picture (8 images, the model's defaults): median {statistics.median(times):.2f} s, "
        f"min {min(times):.2f} s, max {max(times):.2f} s over {len(times)} clicks; wrote {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
