"""The review page: what ``write_review`` writes, and the page itself driven in headless Chromium
(Playwright) over the report of a real audit: filter, decide by click and by key, export the CSV."""

import base64
import csv
import io
import json
import re

import numpy as np
import pytest
from test_audit import _rows, digit_folder  # noqa: F401  (the fixture: a real image folder with wrong labels)

from jal_plugins.review import THUMBNAIL, write_review

HEADER = ["index", "id", "given_label", "action", "label"]


def _data(path):
    """The page's embedded data block, as the page's script reads it."""
    text = path.read_text(encoding="utf-8")
    return json.loads(re.search(r'<script type="application/json" id="data">(.*?)</script>', text, re.S).group(1))


def _suspects(names, count, seed=0):
    rng = np.random.default_rng(seed)
    quality = np.sort(rng.random(count))
    given = rng.integers(0, len(names), count)
    return [{"index": 10 * i, "id": f"id-{i}", "given_label": names[g], "suggested_label": names[(g + 1) % len(names)],
             "label_quality": float(q)} for i, (g, q) in enumerate(zip(given, quality))]  # fmt: skip


def _write(path, names, rows, **changes):
    args = {"title": "t", "audit_key": "key", "names": names, "rows": rows, "noise_matrix": np.eye(len(names)),
            "summary": {"examples": 100, "estimated_noise_rate": 0.1}, **changes}  # fmt: skip
    return write_review(path, **args)


@pytest.mark.parametrize("shape", [(5, 1, 28, 28), (4, 3, 32, 32), (3, 3, 130, 100), (2, 4, 9, 7)])
def test_thumbnails_are_the_images_as_png(tmp_path, shape):
    Image = pytest.importorskip("PIL.Image")
    names = ["a", "b"]
    images = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    data = _data(_write(tmp_path / "r.html", names, _suspects(names, len(images)), inputs=images))
    for row, image in zip(data["rows"], images):
        decoded = Image.open(io.BytesIO(base64.b64decode(row["img"])))
        decoded.load()
        hwc = Image.fromarray(image.transpose(1, 2, 0).squeeze(-1) if shape[1] == 1 else image.transpose(1, 2, 0))
        factor = -(-max(shape[2:]) // THUMBNAIL)
        whole = (0, 0, shape[3] // factor * factor, shape[2] // factor * factor)  # whole blocks only
        expected = np.asarray(hwc.reduce(factor, box=whole) if factor > 1 else hwc, dtype=int)
        got = np.asarray(decoded, dtype=int)
        assert got.shape == expected.shape and max(got.shape[:2]) <= THUMBNAIL
        assert np.abs(got - expected).max() <= (1 if factor > 1 else 0)  # block means: rounding may differ by 1


def test_table_rows_show_their_values_and_text(tmp_path):
    names = ["x", "y", "z"]
    rows = _suspects(names, 3)
    rows[1]["text"] = "a sentence </script> with <b>markup</b>"
    table = np.arange(3 * 40, dtype=float).reshape(3, 40) / 7
    data = _data(_write(tmp_path / "r.html", names, rows, inputs=table))
    assert [r["v"] for r in data["rows"]] == [[float(f"{v:.4g}") for v in row[:32]] for row in table]
    assert data["rows"][1]["text"] == rows[1]["text"] and "text" not in data["rows"][0]


@pytest.mark.parametrize("change, fragment", [
    ({"rows": [{"index": 3, "id": "3", "given_label": "cat", "suggested_label": "a", "label_quality": 0.1}]},
     "given_label 'cat' of example 3 is not one of the classes"),
    ({"inputs": np.zeros((2, 1, 8, 8), np.uint8)}, "inputs has 2 rows for 1 suspects"),
    ({"inputs": np.zeros((1, 1, 8, 8), np.float32)}, "images must be uint8 NCHW"),
    ({"inputs": np.zeros((1, 5, 8, 8), np.uint8)}, "(1, 5, 8, 8)"),
    ({"inputs": np.array([["a", "b"]])}, "numeric (N, F) table, not <U1 (1, 2)"),
    ({"noise_matrix": np.eye(3)}, "noise_matrix has shape (3, 3); 2 classes need (2, 2)"),
    ({"summary": {"examples": 4}}, "summary lacks estimated_noise_rate"),
    ({"audit_key": ""}, "audit_key is empty"),
])  # fmt: skip
def test_bad_input_names_the_bad_value(tmp_path, change, fragment):
    names = ["a", "b"]
    with pytest.raises(ValueError, match=re.escape(fragment)):
        _write(tmp_path / "r.html", names, **{"rows": _suspects(names, 1), **change})
    assert not (tmp_path / "r.html").exists()


# --- in the browser -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium, or a skip that says what is missing."""
    from jal_plugins.headless import chromium

    manager = chromium()
    try:
        browser = manager.__enter__()
    except RuntimeError as e:
        pytest.skip(f"the review page needs a browser: {e}")
    yield browser
    manager.__exit__(None, None, None)


def _open(browser, path):
    """A page on ``path`` from file://, failing the test on a script error or on any request that
    would leave the file (the page must work offline)."""
    page = browser.new_page(accept_downloads=True)
    errors, requests = [], []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.resolve().as_uri())
    page.wait_for_selector(".card, #empty:not([hidden])")
    return page, errors, requests


def _export(page, tmp_path):
    with page.expect_download() as download:
        page.click("#export")
    assert download.value.suggested_filename == "decisions.csv"
    target = tmp_path / "decisions.csv"
    download.value.save_as(target)
    with open(target, newline="") as fh:
        reader = csv.reader(fh)
        return next(reader), list(reader)


def _card_ids(page):
    return [t.split(" ", 1)[1] for t in page.locator(".card .id").all_inner_texts()]


def test_review_page_of_a_real_audit(browser, digit_folder, cli, env, tmp_path):  # noqa: F811
    root, given_labels, _ = digit_folder
    out = tmp_path / "audit"
    args = ["--dataset", "imagefolder", "--dataset-param", f"path={root}", "--epochs", 3, "--out", out]
    done = cli("audit", *args, env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads((out / "audit.json").read_text())["files"]["html"] == str(out / "report.html")
    _, rows = _rows(out / "label_issues.csv")
    page, errors, requests = _open(browser, out / "report.html")
    assert page.title() == f"Label review: imagefolder {root}"
    # every suspect, worst first, a page at a time
    assert _card_ids(page) == [r["id"] for r in rows[:60]]
    assert page.locator("#summary [data-key=suspects] b").inner_text() == str(len(rows))
    assert page.locator("#summary [data-key=examples] b").inner_text() == str(len(given_labels))
    assert page.locator(".card img").count() == min(60, len(rows))
    # the given-class filter narrows them to that class, in the same order
    given = max({r["given_label"] for r in rows}, key=lambda n: sum(r["given_label"] == n for r in rows))
    names = [f"digit-{d}" for d in range(10)]
    page.select_option("#given", str(names.index(given)))
    chosen = [r for r in rows if r["given_label"] == given]
    assert len(chosen) >= 4 and _card_ids(page) == [r["id"] for r in chosen[:60]]
    assert all(t.startswith(f"{given} → ") for t in page.locator(".card .labels").all_inner_texts())
    # one click, then keys: j moves, d drops (and moves on), a number relabels, g keeps
    page.locator(".card").nth(0).locator("button[data-act=accept]").click()
    page.keyboard.press("j")
    page.keyboard.press("d")
    other = next(k for k in range(10) if names[k] not in (chosen[2]["given_label"], chosen[2]["suggested_label"]))
    page.keyboard.press(str(other))
    page.keyboard.press("g")
    expected = [[chosen[0]["index"], chosen[0]["id"], given, "accept", chosen[0]["suggested_label"]],
                [chosen[1]["index"], chosen[1]["id"], given, "drop", ""],
                [chosen[2]["index"], chosen[2]["id"], given, "relabel", names[other]],
                [chosen[3]["index"], chosen[3]["id"], given, "keep", given]]  # fmt: skip
    assert page.locator(".card.relabel .decision").inner_text() == f"relabel: {names[other]}"
    # decisions outlive a reload (localStorage), then export as decisions.csv
    page.reload()
    page.wait_for_selector(".card")
    assert page.locator("#decided").inner_text() == f"decided 4 of {len(rows)}"
    assert _export(page, tmp_path) == (HEADER, expected)
    assert not errors and all(u.startswith(("file:", "data:", "blob:")) for u in requests), (errors, requests)
    # the exported file is what a run trains on: two labels changed, one example gone
    run = cli("run", "--dataset", "imagefolder", "--dataset-param", f"path={root}", "--dataset-param",
              f"corrections={tmp_path / 'decisions.csv'}", "--noise", "none", "--loss", "ce", "--epochs", 1,
              "--out", tmp_path / "runs", "--json", env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr
    record = json.loads(run.stdout)[0]
    assert record["corrections"] == {"file": str((tmp_path / "decisions.csv").resolve()), "relabelled": 2, "dropped": 1}


def test_export_quotes_awkward_names_and_undo_forgets(browser, tmp_path):
    names = ['big, "round"', "</script><b>x</b>", "plain"]
    rows = _suspects(names, 70, seed=3)
    rows[0]["id"] = 'dir,1/"odd".png'
    page, errors, _ = _open(browser, _write(tmp_path / "r.html", names, rows, title="</title><b>t</b>"))
    assert page.title() == "Label review: </title><b>t</b>" and page.locator(".card").count() == 60
    page.keyboard.press("a")  # the first suspect
    page.keyboard.press("2")  # the second: relabelled as class 2
    page.keyboard.press("k")
    page.keyboard.press("u")  # undo the second
    page.keyboard.press("n")  # the next page: the last 10
    assert page.locator(".card").count() == 10
    page.locator(".card").nth(9).locator("select[data-act=relabel]").select_option("1")
    want = [[str(rows[0]["index"]), rows[0]["id"], rows[0]["given_label"], "accept", rows[0]["suggested_label"]]]
    last = rows[69]
    action = {last["given_label"]: "keep", last["suggested_label"]: "accept"}.get(names[1], "relabel")
    want.append([str(last["index"]), last["id"], last["given_label"], action, names[1]])
    assert _export(page, tmp_path) == (HEADER, want)
    assert not errors, errors
