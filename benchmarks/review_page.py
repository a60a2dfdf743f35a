"""The review page at scale: size and first paint of a ``report.html`` with 5,000 suspects of 28x28 images.

The suspects are 5,000 Fashion-MNIST training images (``apt-get install dataset-fashion-mnist``) or,
with ``--source synthetic``, random images, each given a wrong label; the suggestion is its true
class and the label qualities are random. The page is written by ``jal_plugins.review`` as an audit
writes it, opened from file:// in headless Chromium (``jal_plugins.headless``) ``--runs`` times,
each in a fresh browser context, and these are printed (medians over the runs):

- the file's size in MB;
- ``first-contentful-paint`` from the browser's performance API (ms after navigation start);
- ``first page ready``: the page's own ``review-ready`` mark, set once the data is parsed and the
  first 60 cards are in the DOM (ms after navigation start).

    python benchmarks/review_page.py                                  # Fashion-MNIST
    python benchmarks/review_page.py --source synthetic
    python benchmarks/review_page.py --screenshot docs/review-page.png   # also the README's picture
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

SUSPECTS = 5000
NOISE = 0.2  # of a dataset of SUSPECTS / NOISE examples whose wrong labels are all flagged


def fashion_mnist(seed: int):
    """(uint8 NCHW images, true labels, class names) of ``SUSPECTS`` Fashion-MNIST training images."""
    from jal_plugins.datasets.idx import fashion_mnist as load

    data = load(train_size=SUSPECTS, subset_seed=seed)
    return data.x_train, data.y_train, data.names


def synthetic(seed: int):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (SUSPECTS, 1, 28, 28), dtype=np.uint8)
    return images, rng.integers(0, 10, SUSPECTS), [f"class {k}" for k in range(10)]


def report(path: Path, source: str, seed: int) -> Path:
    from jal_plugins.review import write_review

    images, true, names = {"fashion-mnist": fashion_mnist, "synthetic": synthetic}[source](seed)
    rng = np.random.default_rng(seed)
    k = len(names)
    given = (true + rng.integers(1, k, len(true))) % k
    quality = np.sort(rng.beta(1, 8, len(true)))
    rows = [{"index": i, "id": f"{names[g]}/{i:05d}.png", "given_label": names[g], "suggested_label": names[t],
             "label_quality": float(f"{q:.6g}")} for i, (g, t, q) in enumerate(zip(given, true, quality))]  # fmt: skip
    flips = np.zeros((k, k))
    np.add.at(flips, (true, given), 1)
    matrix = (1 - NOISE) * np.eye(k) + NOISE * flips / flips.sum(1, keepdims=True)
    summary = {"examples": int(len(rows) / NOISE), "estimated_noise_rate": NOISE, "dataset": source}
    return write_review(path, title=f"{source} ({len(rows)} suspects)", audit_key=f"{source} {seed}",
                        names=names, rows=rows, inputs=images, noise_matrix=matrix, summary=summary)  # fmt: skip


READY = "performance.getEntriesByName('review-ready').map(e => e.startTime)[0]"
FCP = "performance.getEntriesByName('first-contentful-paint').map(e => e.startTime)[0]"


def measure(browser, path: Path) -> dict:
    """First contentful paint and first page ready (ms) of one fresh load."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.goto(path.resolve().as_uri())
    page.wait_for_selector(".card")
    ready = page.evaluate(READY)
    page.wait_for_function(f"{FCP} !== undefined")
    result = {"first-contentful-paint ms": page.evaluate(FCP), "first page ready ms": ready,
              "cards": page.locator(".card").count()}  # fmt: skip
    context.close()
    return result


def screenshot(browser, path: Path, target: Path) -> None:
    """The top of the page after a few decisions, as a small PNG (a 64-colour palette)."""
    from PIL import Image

    page = browser.new_page(viewport={"width": 1200, "height": 860})
    page.goto(path.resolve().as_uri())
    page.wait_for_selector(".card")
    for key in "agdj":  # accept, keep, drop, then rest on the fourth suspect
        page.keyboard.press(key)
    page.locator(".card").nth(4).locator("select[data-act=relabel]").select_option("3")
    page.evaluate("window.scrollTo(0, 0)")
    raw = target.with_suffix(".raw.png")
    page.screenshot(path=str(raw))
    Image.open(raw).convert("RGB").quantize(64).save(target, optimize=True)
    raw.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", choices=["fashion-mnist", "synthetic"], default="fashion-mnist")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="the report's path (default: in a new temporary folder)")
    parser.add_argument("--screenshot", help="also save a screenshot of the page here (PNG)")
    args = parser.parse_args()
    from jal_plugins.headless import chromium

    path = Path(args.out or Path(tempfile.mkdtemp(prefix="review-page-")) / "report.html")
    report(path, args.source, args.seed)
    with chromium() as browser:
        runs = [measure(browser, path) for _ in range(args.runs)]
        if args.screenshot:
            screenshot(browser, path, Path(args.screenshot))
    result = {"source": args.source, "suspects": SUSPECTS, "report": str(path),
              "size MB": round(path.stat().st_size / 1e6, 2), "runs": args.runs,
              **{k: round(statistics.median(r[k] for r in runs), 1) for k in runs[0] if k.endswith("ms")},
              "cards on the first page": runs[0]["cards"], "command": " ".join(sys.argv)}  # fmt: skip
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
