"""The user's own data: image folders, Hugging Face datasets and tables, read from real local files, offline."""

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
