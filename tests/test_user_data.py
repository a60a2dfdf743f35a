"""The user's own data: image folders, Hugging Face datasets and tables, read from real local files, offline."""

import csv
import os
import warnings

import numpy as np
import pytest

from jal_plugins.datasets.folder import imagefolder
from jal_plugins.datasets.hf import hf
from jal_plugins.datasets.table import table

datasets = pytest.importorskip("datasets")
Image = pytest.importorskip("PIL.Image")


def _png(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


@pytest.fixture
def folder(tmp_path):
    """cat: 6 RGB 12x12 PNGs; dog: 5 grayscale 12x12 PNGs and a JPEG; plus files that are not examples."""
    rng = np.random.default_rng(0)
    root = tmp_path / "pets"
    for i in range(6):
        _png(root / "cat" / f"c{i}.png", rng.integers(0, 256, (12, 12, 3), dtype=np.uint8))
    for i in range(5):
        _png(root / "dog" / f"d{i}.png", rng.integers(0, 256, (12, 12), dtype=np.uint8))
    _png(root / "dog" / "sub" / "e.jpg", rng.integers(0, 256, (12, 12), dtype=np.uint8))
    (root / "dog" / "notes.txt").write_text("not an image")
    _png(root / ".hidden" / "x.png", rng.integers(0, 256, (12, 12), dtype=np.uint8))
    return root


def test_imagefolder_keeps_colour_names_classes_and_positions(folder, tmp_path):
    data = imagefolder(str(folder), test_fraction=0.25, cache_dir=str(tmp_path / "cache"))
    files = ["cat/c0.png", "cat/c1.png", "cat/c2.png", "cat/c3.png", "cat/c4.png", "cat/c5.png",
             "dog/d0.png", "dog/d1.png", "dog/d2.png", "dog/d3.png", "dog/d4.png", "dog/sub/e.jpg"]  # fmt: skip
    assert data.names == ["cat", "dog"] and data.ids.tolist() == files
    assert data.x_train.shape[1:] == (3, 12, 12) and data.x_train.dtype == np.uint8  # own size, RGB for all
    x, labels, positions = data.labelled()
    assert sorted(positions) == list(range(12)) and len(data.y_test) == 3
    np.testing.assert_array_equal(labels, [files[p].startswith("dog") for p in positions])
    cat = np.asarray(Image.open(folder / "cat" / "c3.png"))
    np.testing.assert_array_equal(x[positions.tolist().index(3)], cat.transpose(2, 0, 1))
    small = imagefolder(str(folder), size=8, cache_dir=str(tmp_path / "cache"))
    assert small.x_train.shape[1:] == (3, 8, 8)
    for path in folder.glob("cat/*.png"):  # all grayscale now: one channel
        _png(path, np.asarray(Image.open(path).convert("L")))
    assert imagefolder(str(folder), cache_dir=str(tmp_path / "cache")).x_train.shape[1:] == (1, 12, 12)


def test_imagefolder_of_mixed_sizes_is_resized_to_32(folder, tmp_path):
    _png(folder / "cat" / "big.png", np.zeros((20, 20, 3), np.uint8))
    assert imagefolder(str(folder), cache_dir=str(tmp_path)).x_train.shape[1:] == (3, 32, 32)


def test_second_load_reads_the_cache_and_a_changed_file_is_decoded_again(folder, tmp_path):
    cache = tmp_path / "cache"
    first = imagefolder(str(folder), cache_dir=str(cache))
    assert len(list(cache.glob("imagefolder-*.npz"))) == 1
    # Garbage of the same length and mtime: only a cache hit still gives the original pixels.
    path = folder / "cat" / "c0.png"
    stat = path.stat()
    path.write_bytes(b"\0" * stat.st_size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a decode would warn about the unreadable file
        second = imagefolder(str(folder), cache_dir=str(cache))
    np.testing.assert_array_equal(second.x_train, first.x_train)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # now it has changed: decoded again
    with pytest.warns(UserWarning, match=r"skipped 1 unreadable image\(s\): cat/c0.png"):
        third = imagefolder(str(folder), cache_dir=str(cache))
    assert len(third.labelled()[1]) == 11 and "cat/c0.png" in third.ids.tolist()
    assert len(list(cache.glob("imagefolder-*.npz"))) == 2


def test_corrupt_image_is_skipped_with_a_warning_naming_it(folder, tmp_path):
    (folder / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    with pytest.warns(UserWarning, match=r"dog/broken.png"):
        data = imagefolder(str(folder), cache_dir=str(tmp_path))
    _, _, positions = data.labelled()
    assert len(positions) == 12 and data.ids[6] == "dog/broken.png" and 6 not in positions
    with pytest.warns(UserWarning, match=r"dog/broken.png"):  # said again when it comes from the cache
        imagefolder(str(folder), cache_dir=str(tmp_path))


@pytest.mark.parametrize("make, message", [
    (lambda root: None, "has no class sub-folders"),
    (lambda root: (root / "cat").mkdir(), "class folder .*cat' has no images"),
    (lambda root: _png(root / "cat" / "a.png", np.zeros((4, 4), np.uint8)), "single class 'cat'"),
])  # fmt: skip
def test_imagefolder_refuses_folders_without_two_classes_of_images(tmp_path, make, message):
    root = tmp_path / "data"
    root.mkdir()
    make(root)
    with pytest.raises(ValueError, match=message):
        imagefolder(str(root), cache_dir=str(tmp_path / "cache"))


# -- tables -------------------------------------------------------------------------------------------
@pytest.fixture
def frame():
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    return pd.DataFrame({"height": rng.normal(170, 10, 40), "legs": rng.integers(2, 5, 40),
                         "kind": np.where(np.arange(40) % 4 == 0, "zebra", "ant")})  # fmt: skip


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_table_standardises_with_training_statistics_and_names_classes(tmp_path, frame, suffix):
    path = tmp_path / f"animals.{suffix}"
    frame.to_csv(path, index=False) if suffix == "csv" else frame.to_parquet(path)
    data = table(str(path), label_column="kind", cache_dir=str(tmp_path / "cache"))
    assert data.names == ["ant", "zebra"] and data.x_train.dtype == np.float32 and data.input_shape == (2,)
    np.testing.assert_allclose(data.x_train.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(0), 1, atol=1e-5)
    x, labels, rows = data.labelled()
    np.testing.assert_array_equal(labels, frame["kind"].to_numpy()[rows] == "zebra")
    raw = frame[["height", "legs"]].to_numpy()[data.train_index]
    np.testing.assert_allclose(data.x_train, (raw - raw.mean(0)) / raw.std(0), rtol=1e-5)
    only = table(str(path), label_column="kind", feature_columns="legs", cache_dir=str(tmp_path / "cache"))
    assert only.input_shape == (1,)


@pytest.mark.parametrize("change, params, message", [
    (None, {"label_column": "colour"}, r"label_column 'colour' is not a column of .*animals.csv.*height, legs, kind"),
    (None, {}, "needs label_column=NAME"),
    (lambda f: f.assign(name="x"), {"label_column": "kind"}, r"feature column 'name' of .*animals.csv is not numeric"),
    (lambda f: f.assign(kind="ant"), {"label_column": "kind"}, r"label_column 'kind' of .*animals.csv has a single class 'ant'"),
    (lambda f: f.assign(kind=f["kind"].where(f.index != 7)), {"label_column": "kind"},
     r"label_column 'kind' of .*animals.csv has 1 missing value\(s\), the first at row 7"),
    (lambda f: f.assign(legs=f["legs"].where(f.index != 3)), {"label_column": "kind"},
     r"feature column 'legs' of .*animals.csv has 1 missing"),
])  # fmt: skip
def test_table_errors_name_the_column_and_the_file(tmp_path, frame, change, params, message):
    path = tmp_path / "animals.csv"
    (change(frame) if change else frame).to_csv(path, index=False)
    with pytest.raises(ValueError, match=message):
        table(str(path), cache_dir=str(tmp_path / "cache"), **params)


# -- Hugging Face datasets ------------------------------------------------------------------------------
def _image_dataset(n, seed=0):
    rng = np.random.default_rng(seed)
    features = datasets.Features({"picture": datasets.Image(), "animal": datasets.ClassLabel(names=["ant", "bee", "cow"]),
                                  "note": datasets.Value("string")})  # fmt: skip
    images = [rng.integers(0, 256, (8, 8, 3), dtype=np.uint8) for _ in range(n)]
    return datasets.Dataset.from_dict({"picture": images, "animal": [i % 2 for i in range(n)], "note": ["x"] * n},
                                      features=features)  # fmt: skip


def test_hf_saved_dataset_dict_uses_its_test_split_and_classlabel_names(tmp_path):
    train, test = _image_dataset(12), _image_dataset(4, seed=1)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "saved"))
    data = hf(str(tmp_path / "saved"), cache_dir=str(tmp_path / "cache"))
    assert data.names == ["ant", "bee"]  # "cow" never occurs
    assert data.x_train.shape == (12, 3, 8, 8) and data.x_test.shape == (4, 3, 8, 8)
    np.testing.assert_array_equal(data.x_test[2], np.asarray(test[2]["picture"]).transpose(2, 0, 1))
    assert data.example_ids(data.test_index[:2]) == ["test/0", "test/1"] and data.y_test.tolist() == [0, 1, 0, 1]
    held = hf(str(tmp_path / "saved"), test_fraction=0.25, cache_dir=str(tmp_path / "cache"))
    assert len(held.y_train) == 9 and len(held.y_test) == 3


def test_hf_single_dataset_and_parquet_files_offline(tmp_path):
    ds = _image_dataset(10)
    ds.save_to_disk(str(tmp_path / "one"))
    data = hf(str(tmp_path / "one"), cache_dir=str(tmp_path / "cache"))  # no test split: test_fraction 0.2
    assert len(data.y_train) == 8 and len(data.y_test) == 2
    ds.to_parquet(str(tmp_path / "part-0.parquet"))
    files = hf("parquet", data_files=str(tmp_path / "part-0.parquet"), cache_dir=str(tmp_path / "cache"))
    np.testing.assert_array_equal(files.x_train, data.x_train)
    assert hf(str(tmp_path / "part-0.parquet"), cache_dir=str(tmp_path / "cache")).names == ["ant", "bee"]


def test_hf_errors_name_the_split_or_column(tmp_path):
    _image_dataset(10).save_to_disk(str(tmp_path / "one"))
    where = str(tmp_path / "one")
    with pytest.raises(ValueError, match=r"no split split='validation' \(splits: train\)"):
        hf(where, split="validation", cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="not both"):
        hf(where, test_split="test", test_fraction=0.3, cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"label_column 'kind' is not a column of .*one"):
        hf(where, label_column="kind", cache_dir=str(tmp_path))
    rows = {"size": [1.0, 2.0, 3.0, 4.0], "note": list("abcd"), "label": [0, 1, 0, 1]}
    datasets.Dataset.from_dict(rows).save_to_disk(str(tmp_path / "rows"))
    with pytest.raises(ValueError, match=r"feature column 'note' of .*rows.* is not numeric \(string\)"):
        hf(str(tmp_path / "rows"), cache_dir=str(tmp_path))
    assert hf(str(tmp_path / "rows"), feature_columns="size", test_fraction=0.5, cache_dir=str(tmp_path)).input_shape == (1,)


def test_new_sources_are_listed_and_known_datasets_name_their_classes():
    from jal_plugins.datasets import digits
    from jal_plugins.plugins import host

    assert {"imagefolder", "hf", "table"} <= set(host()["datasets"].entries)
    assert digits().names == [str(d) for d in range(10)]


# -- corrections ------------------------------------------------------------------------------------
HEADER = ["index", "id", "given_label", "action", "label"]


def _decisions(path, rows, header=HEADER):
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


def _labels_by_id(data) -> dict:
    _, labels, positions = data.labelled()
    return dict(zip(data.example_ids(positions), np.asarray(data.names)[labels]))


def test_table_corrections_relabel_and_drop_by_id_and_leave_the_files_alone(tmp_path, frame):
    path = tmp_path / "animals.csv"
    frame.to_csv(path, index=False)  # row 0 is a zebra, rows 1..3 ants
    decisions = _decisions(tmp_path / "decisions.csv", [[0, "0", "zebra", "relabel", "ant"],
                                                        [1, "1", "ant", "accept", "zebra"], [2, "2", "ant", "drop", ""],
                                                        [3, "3", "ant", "keep", "zebra"]])  # fmt: skip
    before = (path.read_bytes(), (tmp_path / "decisions.csv").read_bytes())
    plain = table(str(path), label_column="kind", cache_dir=str(tmp_path / "cache"))
    fixed = table(str(path), label_column="kind", corrections=decisions, cache_dir=str(tmp_path / "cache"))
    expected = {**_labels_by_id(plain), "0": "ant", "1": "zebra"}
    del expected["2"]
    assert _labels_by_id(fixed) == expected
    assert fixed.corrections == {"file": str((tmp_path / "decisions.csv").resolve()), "relabelled": 2, "dropped": 1}
    assert plain.corrections is None
    # the split is the source's: the same examples are held out, less the dropped one
    assert set(fixed.test_index.tolist()) == set(plain.test_index.tolist()) - {2}
    assert len(fixed.y_train) + len(fixed.y_test) == len(frame) - 1
    assert (path.read_bytes(), (tmp_path / "decisions.csv").read_bytes()) == before


def test_image_folder_and_hf_corrections_use_the_audit_ids(folder, tmp_path):
    decisions = _decisions(tmp_path / "d.csv", [[0, "cat/c0.png", "cat", "relabel", "dog"],
                                                [7, "dog/d1.png", "dog", "drop", ""]])  # fmt: skip
    plain = _labels_by_id(imagefolder(str(folder), cache_dir=str(tmp_path / "cache")))
    fixed = _labels_by_id(imagefolder(str(folder), corrections=decisions, cache_dir=str(tmp_path / "cache")))
    assert fixed == {**{k: v for k, v in plain.items() if k != "dog/d1.png"}, "cat/c0.png": "dog"}
    train, test = _image_dataset(12), _image_dataset(4, seed=1)
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "saved"))
    decisions = _decisions(tmp_path / "h.csv", [[3, "train/3", "bee", "accept", "ant"],
                                                [13, "test/1", "bee", "drop", ""]])  # fmt: skip
    data = hf(str(tmp_path / "saved"), corrections=decisions, cache_dir=str(tmp_path / "cache"))
    labels = _labels_by_id(data)
    assert labels["train/3"] == "ant" and "test/1" not in labels and len(data.y_test) == 3
    assert data.corrections["relabelled"] == 1 and data.corrections["dropped"] == 1


@pytest.mark.parametrize("rows, message", [
    ([[5, "5", "ant", "keep", ""], [6, "6", "ant", "fix", "zebra"]], r"line 3 \(id '6'\): unknown action 'fix'"),
    ([[5, "5", "ant", "relabel", "horse"]], r"line 2 \(id '5'\): unknown class 'horse' \(classes: ant, zebra\)"),
    ([[5, "5", "ant", "relabel", ""]], r"line 2 \(id '5'\): action 'relabel' needs a label"),
    ([[5, "5", "ant", "drop", ""], [5, "5", "ant", "keep", ""]], r"line 3 \(id '5'\): the id is already decided on line 2"),
    ([[5, "5", "ant", "keep", ""], [99, "99", "ant", "drop", ""]], r"line 3 \(id '99'\): no example of the source has"),
    ([[0, "0", "ant", "keep", ""]], r"line 2 \(id '0'\): given_label 'ant', but the source labels it 'zebra'"),
])  # fmt: skip
def test_bad_corrections_name_the_first_offending_line(tmp_path, frame, rows, message):
    path = tmp_path / "animals.csv"
    frame.to_csv(path, index=False)
    decisions = _decisions(tmp_path / "decisions.csv", rows)
    with pytest.raises(ValueError, match=r"corrections '.*decisions.csv' " + message):
        table(str(path), label_column="kind", corrections=decisions, cache_dir=str(tmp_path / "cache"))


def test_corrections_file_needs_its_columns(tmp_path, frame):
    path = tmp_path / "animals.csv"
    frame.to_csv(path, index=False)
    decisions = _decisions(tmp_path / "d.csv", [[0, "0", "zebra", "ant"]], header=["index", "id", "given_label", "label"])
    with pytest.raises(ValueError, match=r"lacks the column\(s\) action"):
        table(str(path), label_column="kind", corrections=decisions, cache_dir=str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError, match="corrections file 'nowhere.csv' does not exist"):
        table(str(path), label_column="kind", corrections="nowhere.csv", cache_dir=str(tmp_path / "cache"))


# -- embeddings -------------------------------------------------------------------------------------
def test_a_column_of_vectors_gives_a_feature_per_element(tmp_path, frame):
    vectors = np.random.default_rng(1).normal(size=(len(frame), 4))
    path = tmp_path / "animals.parquet"
    frame.assign(emb=list(vectors)).to_parquet(path)
    data = table(str(path), label_column="kind", cache_dir=str(tmp_path / "cache"))
    assert data.input_shape == (6,)  # height, legs and the 4 elements of emb
    only = table(str(path), label_column="kind", feature_columns="emb", cache_dir=str(tmp_path / "cache"))
    raw = vectors[only.train_index]
    np.testing.assert_allclose(only.x_train, (raw - raw.mean(0)) / raw.std(0), rtol=1e-4, atol=1e-5)
    features = datasets.Features({"emb": datasets.Sequence(datasets.Value("float32"), length=4),
                                  "label": datasets.ClassLabel(names=["ant", "zebra"])})  # fmt: skip
    rows = {"emb": vectors.astype(np.float32), "label": (np.arange(len(frame)) % 4 == 0).astype(int)}
    datasets.Dataset.from_dict(rows, features=features).save_to_disk(str(tmp_path / "emb"))
    hf_data = hf(str(tmp_path / "emb"), cache_dir=str(tmp_path / "cache"))
    np.testing.assert_allclose(hf_data.x_train, only.x_train, rtol=1e-4, atol=1e-5)  # same rows, same split


@pytest.mark.parametrize("change, message", [
    (lambda v: v[:5] + [v[5][:3]] + v[6:], r"holds vectors of different lengths: 4 at row 0, 3 at row 5"),
    (lambda v: v[:7] + [[0.0, float("nan"), 1.0, 2.0]] + v[8:], r"has 1 missing or infinite value\(s\), the first at row 7"),
    (lambda v: v[:2] + [None] + v[3:], r"has 1 missing vector\(s\), the first at row 2"),
])  # fmt: skip
def test_bad_vectors_are_errors_naming_the_column_and_row(tmp_path, frame, change, message):
    vectors = change(np.random.default_rng(1).normal(size=(len(frame), 4)).tolist())
    path = tmp_path / "animals.parquet"
    frame.assign(emb=vectors).to_parquet(path)
    with pytest.raises(ValueError, match=r"feature column 'emb' of .*animals.parquet " + message):
        table(str(path), label_column="kind", cache_dir=str(tmp_path / "cache"))


def test_npz_of_embeddings_trains_as_float_rows_and_names_a_bad_row(tmp_path):
    from jal_plugins.datasets.arrays import npz

    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 16)).astype(np.float32)
    np.savez(tmp_path / "emb.npz", x_train=x, y_train=np.arange(20) % 2, x_test=x[:4], y_test=np.arange(4) % 2)
    assert npz(str(tmp_path / "emb.npz")).input_shape == (16,)
    x[9, 3] = np.inf
    np.savez(tmp_path / "emb.npz", x_train=x, y_train=np.arange(20) % 2, x_test=x[:4], y_test=np.arange(4) % 2)
    with pytest.raises(ValueError, match=r"x_train has NaN or infinite values in 1 row\(s\), the first at row 9"):
        npz(str(tmp_path / "emb.npz"))


# -- text -------------------------------------------------------------------------------------------
@pytest.fixture
def news(tmp_path, sentences):
    pd = pytest.importorskip("pandas")
    texts, noisy, _ = sentences(60)
    return pd.DataFrame({"text": texts, "topic": noisy, "words": [len(t.split()) for t in texts]})


def test_text_column_becomes_tfidf_of_the_training_vocabulary(tmp_path, news):
    from sklearn.feature_extraction.text import TfidfVectorizer

    path = tmp_path / "news.csv"
    news.to_csv(path, index=False)
    data = table(str(path), label_column="topic", text_column="text", max_features=12, cache_dir=str(tmp_path / "c"))
    assert data.input_shape == (12,) and data.x_train.dtype == np.float32 and data.names == ["food", "sport", "tech"]
    texts = news["text"].to_numpy()
    vectorizer = TfidfVectorizer(max_features=12).fit(texts[data.train_index])
    np.testing.assert_allclose(data.x_test, vectorizer.transform(texts[data.test_index]).toarray(), atol=1e-6)
    assert data.example_texts(data.test_index[:3]) == texts[data.test_index[:3]].tolist()
    datasets.Dataset.from_dict({"sentence": texts, "label": news["topic"].tolist()}).save_to_disk(str(tmp_path / "hf"))
    same = hf(str(tmp_path / "hf"), text_column="sentence", max_features=12, cache_dir=str(tmp_path / "c"))
    np.testing.assert_array_equal(same.x_train, data.x_train)
    assert same.example_texts([5]) == [texts[5]]
    with pytest.raises(ValueError, match="has no texts"):
        table(str(path), label_column="topic", feature_columns="words", cache_dir=str(tmp_path / "c")).example_texts([0])


@pytest.mark.parametrize("change, params, message", [
    (lambda f: f.assign(text=f["text"].where(f.index != 4)), {}, r"text_column 'text' of .*news.csv has 1 missing value\(s\), the first at row 4"),
    (None, {"text_column": "words"}, r"text_column 'words' of .*news.csv is not text \(int64\)"),
    (None, {"text_column": "title"}, r"text_column 'title' is not a column of .*news.csv"),
    (None, {"feature_columns": "words"}, "give text_column or feature_columns, not both"),
    (None, {"max_features": 0}, "max_features must be an integer >= 1"),
    (None, {"text_column": None, "max_features": 50}, "max_features=50 sizes a text_column's vocabulary"),
])  # fmt: skip
def test_text_errors_name_the_column(tmp_path, news, change, params, message):
    path = tmp_path / "news.csv"
    (change(news) if change else news).to_csv(path, index=False)
    params = {"text_column": "text", **params}
    with pytest.raises(ValueError, match=message):
        table(str(path), label_column="topic", cache_dir=str(tmp_path / "c"), **params)


# -- the runner ---------------------------------------------------------------------------------------
def test_run_on_texts_with_corrections_records_them_and_a_new_decision_is_a_new_run(tmp_path, news, cli):
    import json

    path = tmp_path / "news.csv"
    news.to_csv(path, index=False)
    decisions = tmp_path / "decisions.csv"
    topic = news["topic"].tolist()
    _decisions(decisions, [[0, "0", topic[0], "relabel", "tech" if topic[0] != "tech" else "food"],
                           [1, "1", topic[1], "drop", ""]])  # fmt: skip
    args = ["run", "--dataset", "table", "--dataset-param", f"path={path}", "--dataset-param", "label_column=topic",
            "--dataset-param", "text_column=text", "--epochs", 1, "--loss", "ce", "--out", tmp_path / "out", "--json"]
    plain = cli(*args)
    fixed = cli(*args, "--dataset-param", f"corrections={decisions}")
    assert plain.returncode == 0 and fixed.returncode == 0, plain.stderr + fixed.stderr
    plain, fixed = json.loads(plain.stdout)[0], json.loads(fixed.stdout)[0]
    assert "corrections" not in plain
    assert fixed["corrections"] == {"file": str(decisions.resolve()), "relabelled": 1, "dropped": 1}
    _decisions(decisions, [[1, "1", topic[1], "drop", ""]])
    again = cli(*args, "--dataset-param", f"corrections={decisions}")
    again = json.loads(again.stdout)[0]
    assert again["corrections"]["relabelled"] == 0 and len({plain["run_id"], fixed["run_id"], again["run_id"]}) == 3


def test_an_edited_corrections_file_is_read_again_in_the_same_process(tmp_path, frame):
    from jal_plugins.job import load_dataset

    path = tmp_path / "animals.csv"
    frame.to_csv(path, index=False)
    decisions = _decisions(tmp_path / "decisions.csv", [[1, "1", "ant", "drop", ""]])
    params = {"path": str(path), "label_column": "kind", "corrections": decisions, "cache_dir": str(tmp_path / "c")}
    assert load_dataset("table", **params).corrections["dropped"] == 1
    _decisions(tmp_path / "decisions.csv", [[1, "1", "ant", "keep", ""]])
    assert load_dataset("table", **params).corrections["dropped"] == 0
