"""Dataset plugins and the Hugging Face adapter on real files: Hub-layout parquet, python batches, IDX, CIFAR-N."""

import gzip
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from jal_plugins.datasets.cifar import LABEL_SETS, cifar10, cifar10n, cifar100n
from jal_plugins.datasets.idx import mnist
from jal_plugins.labelfiles import HUB_CIFAR10_BLOCKS, block_order

datasets = pytest.importorskip("datasets")
hf = pytest.importorskip("jal_plugins.adapters.hf_datasets")

N, N_TEST = 50, 10  # five blocks of ten rows, like the Hub's five CIFAR-10 batches


def _images(n, offset=0):
    """Images whose first pixel is their original index, so a row's identity survives any reordering."""
    x = np.random.default_rng(offset).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    x[:, 0, 0, 0] = np.arange(n) + offset
    return x


@pytest.fixture(scope="module")
def original():
    rng = np.random.default_rng(7)
    clean = rng.integers(0, 10, N)
    sets = {key: (clean + rng.integers(0, 2, N) * rng.integers(1, 10, N)) % 10 for key in LABEL_SETS["cifar10"].values()}
    sets["clean_label"] = clean
    return {"x": _images(N), "x_test": _images(N_TEST, 100), "y_test": rng.integers(0, 10, N_TEST), "sets": sets}


def _hub_folder(root, x, y, x_test, y_test, label="label", config="plain_text"):
    names = [f"c{i}" for i in range(10)]
    features = datasets.Features({"img": datasets.Image(), label: datasets.ClassLabel(names=names)})
    for split, xs, ys in (("train", x, y), ("test", x_test, y_test)):
        ds = datasets.Dataset.from_dict({"img": list(xs), label: ys.tolist()}, features=features)
        (root / config).mkdir(parents=True, exist_ok=True)
        ds.to_parquet(str(root / config / f"{split}-00000-of-00001.parquet"))
    return root


@pytest.fixture(scope="module")
def hub(tmp_path_factory, original):
    """A local copy of the Hub's layout whose train rows come in the Hub's block order 4, 3, 2, 5, 1."""
    order = block_order(N, HUB_CIFAR10_BLOCKS)
    root = tmp_path_factory.mktemp("hub")
    clean = original["sets"]["clean_label"]
    return _hub_folder(root, original["x"][order], clean[order], original["x_test"], original["y_test"])


@pytest.fixture(scope="module")
def labels_file(tmp_path_factory, original):
    path = tmp_path_factory.mktemp("labels") / "CIFAR-10_human.npz"
    np.savez(path, **original["sets"])
    return path


def test_load_cifar_n_gives_every_hub_row_its_own_images_label(hub, labels_file, original, tmp_path):
    dd = hf.load_cifar_n("cifar10n", "worst", base=str(hub), labels_file=str(labels_file), cache_dir=str(tmp_path))
    train = dd["train"]
    assert train.column_names == ["img", "label", "clean_label"]
    assert train.features["label"].names == train.features["clean_label"].names == [f"c{i}" for i in range(10)]
    ids = train.with_format("numpy")[:]["img"][:, 0, 0, 0].astype(int)
    assert sorted(ids) == list(range(N)) and ids.tolist() != list(range(N))  # really reordered
    np.testing.assert_array_equal(train["label"], original["sets"]["worse_label"][ids])
    np.testing.assert_array_equal(train["clean_label"], original["sets"]["clean_label"][ids])
    assert len(dd["test"]) == N_TEST


def test_dataset_plugin_puts_hub_rows_back_in_original_order(hub, labels_file, original, tmp_path):
    data = cifar10n(source=str(hub), labels_file=str(labels_file), cache_dir=str(tmp_path))
    np.testing.assert_array_equal(data.x_train[:, 0, 0, 0], np.arange(N))
    np.testing.assert_array_equal(data.y_train, original["sets"]["clean_label"])
    for label_set, key in LABEL_SETS["cifar10"].items():
        np.testing.assert_array_equal(data.noisy_labels[label_set], original["sets"][key])
    # without a label file the Hub's documented order is used, with the same result
    plain = cifar10(source=str(hub), cache_dir=str(tmp_path))
    np.testing.assert_array_equal(plain.x_train, data.x_train)
    assert plain.names == data.names == [f"c{i}" for i in range(10)]  # the Hub's ClassLabel names


def test_label_file_in_another_order_raises(hub, original, tmp_path):
    shuffled = {k: v[np.random.default_rng(0).permutation(N)] for k, v in original["sets"].items()}
    np.savez(tmp_path / "shuffled.npz", **shuffled)
    with pytest.raises(ValueError, match="does not align"):
        hf.load_cifar_n("cifar10n", base=str(hub), labels_file=str(tmp_path / "shuffled.npz"), cache_dir=str(tmp_path))
    np.savez(tmp_path / "short.npz", **{k: v[:-5] for k, v in original["sets"].items()})
    with pytest.raises(ValueError, match="45 labels but the base train split has 50 rows"):
        cifar10n(source=str(hub), labels_file=str(tmp_path / "short.npz"), cache_dir=str(tmp_path))


def test_cifar_n_argument_errors(hub, labels_file, tmp_path):
    with pytest.raises(ValueError, match="UCSC-REAL"):
        hf.load_cifar_n("cifar10n", base=str(hub))
    with pytest.raises(ValueError, match="label_set 'noisy'"):
        hf.load_cifar_n("cifar10n", "noisy", base=str(hub), labels_file=str(labels_file))
    with pytest.raises(ValueError, match="lacks"):
        cifar100n(source=str(hub), labels_file=str(labels_file), cache_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="neither an existing path nor a Hub id"):
        cifar10(source=str(tmp_path / "nowhere"))


def test_cifar100_hub_layout_uses_fine_labels_in_original_order(tmp_path, original):
    root = _hub_folder(tmp_path / "c100", original["x"], original["sets"]["clean_label"], original["x_test"],
                       original["y_test"], label="fine_label", config="cifar100")  # fmt: skip
    dd = hf.load_cifar_base(str(root), cache_dir=str(tmp_path / "cache"))
    assert dd["train"].column_names == ["img", "label"]
    sets = {"clean_label": original["sets"]["clean_label"], "noisy_label": original["sets"]["worse_label"]}
    np.savez(tmp_path / "c100.npz", **sets)
    data = cifar100n(source=str(root), labels_file=str(tmp_path / "c100.npz"), cache_dir=str(tmp_path / "cache"))
    np.testing.assert_array_equal(data.x_train[:, 0, 0, 0], np.arange(N))
    np.testing.assert_array_equal(data.noisy_labels["noisy"], sets["noisy_label"])


def test_python_batches_folder(tmp_path, original, labels_file):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    x = original["x"].transpose(0, 3, 1, 2).reshape(N, -1)
    clean = original["sets"]["clean_label"]
    for b in range(5):
        rows = slice(10 * b, 10 * b + 10)
        batch = {"data": x[rows], "labels": clean[rows].tolist()}
        (folder / f"data_batch_{b + 1}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {"data": original["x_test"].transpose(0, 3, 1, 2).reshape(N_TEST, -1), "labels": original["y_test"].tolist()}
    (folder / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    data = cifar10n(source=str(tmp_path), labels_file=str(labels_file))
    np.testing.assert_array_equal(data.x_train, original["x"].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(data.noisy_labels["worst"], original["sets"]["worse_label"])
    dd = hf.load_cifar_n("cifar10n", "aggre", base=str(folder), labels_file=str(labels_file))
    np.testing.assert_array_equal(dd["train"]["label"], original["sets"]["aggre_label"])
    # a batch that pickles anything but arrays and lists is refused, not executed
    (folder / "test_batch").write_bytes(pickle.dumps({"data": x[:1], "labels": [0], "evil": os.system}))
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        cifar10(source=str(folder))


def test_hf_adapter_feeds_jal_classifier_and_cleanlab(hub, labels_file, tmp_path):
    import torch

    from jal_plugins import JALClassifier

    dd = hf.load_cifar_n("cifar10n", "worst", base=str(hub), labels_file=str(labels_file), cache_dir=str(tmp_path))
    adapter = hf.HFDatasetAdapter(dd["train"])
    x, y = adapter[3]
    assert x.shape == (3, 32, 32) and x.dtype == torch.uint8 and y == dd["train"][3]["label"]
    subset = torch.utils.data.Subset(adapter, [0, 2, 4])
    assert [int(subset[i][0][0, 0, 0]) for i in range(3)] == [int(adapter[i][0][0, 0, 0]) for i in (0, 2, 4)]
    noisy = np.asarray(dd["train"]["label"])
    clf = JALClassifier(epochs=2, module_params={"width": 0.125}, random_state=0).fit(adapter, noisy)
    assert clf.predict_proba(adapter).shape == (N, 10)
    # cleanlab prunes the adapter through torch Subsets: the same rows as with the equivalent arrays
    from cleanlab.classification import CleanLearning

    arrays = np.stack([np.asarray(adapter[i][0]) for i in range(N)])
    fitted = []
    for X in (adapter, arrays):
        model = JALClassifier(epochs=3, module_params={"width": 0.125}, random_state=0)
        fitted.append(CleanLearning(model, cv_n_folds=2, seed=0).fit(X, noisy))
    quality = [cl.label_issues_df["label_quality"].to_numpy() for cl in fitted]
    np.testing.assert_allclose(quality[0], quality[1])  # the same out-of-fold rows
    np.testing.assert_allclose(fitted[0].predict_proba(arrays), fitted[1].predict_proba(arrays))  # same kept rows
    with pytest.raises(ValueError, match="label_column 'fine_label'"):
        hf.HFDatasetAdapter(dd["train"], label_column="fine_label")


def _idx(path, array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_mnist_family_reads_idx_and_balanced_subsets(tmp_path):
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(10), 12)
    _idx(tmp_path / "train-images-idx3-ubyte.gz", rng.integers(0, 256, (120, 28, 28)))
    _idx(tmp_path / "train-labels-idx1-ubyte.gz", y)
    _idx(tmp_path / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (20, 28, 28)))
    _idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.arange(20) % 10)
    data = mnist(path=str(tmp_path), train_size=50)
    assert data.x_train.shape == (50, 1, 28, 28) and np.bincount(data.y_train).tolist() == [5] * 10
    assert data.mean == [0.1307] and data.x_test.shape == (20, 1, 28, 28)
    assert data.train_index.tolist() == sorted(data.train_index) and data.test_index[0] == 120
    with pytest.raises(ValueError, match="subset size"):
        mnist(path=str(tmp_path), train_size=500)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x0d\x01junk"))
    with pytest.raises(ValueError, match="not an unsigned-byte IDX file"):
        mnist(path=str(tmp_path))
    with pytest.raises(ValueError, match="path=DIR"):
        mnist()


def test_hub_id_offline_gives_a_clear_error(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "HF_HOME": str(tmp_path)}
    code = "from jal_plugins.datasets import cifar10; cifar10(cache_dir=%r)" % str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "cannot load 'uoft-cs/cifar10'" in proc.stderr


# -- the real CIFAR-10 and CIFAR-10N files --------------------------------------------------------
def test_cifar10n_from_jpeg_npz_has_the_papers_noise_rates(shared_data):
    dd = hf.load_cifar_n("cifar10n", "worst", base=str(shared_data / "cifar10-jpeg.npz"),
                         labels_file=str(shared_data / "CIFAR-10_human.pt"))  # fmt: skip
    train = dd["train"]
    assert len(train) == 50_000 and len(dd["test"]) == 10_000
    rate = np.mean(np.asarray(train["label"]) != np.asarray(train["clean_label"]))
    assert round(rate * 100, 2) == 40.21


def test_cifar10n_plugin_on_the_exact_subset(shared_data):
    data = cifar10n(source=str(shared_data / "cifar10-exact-subset.npz"), labels_file=str(shared_data / "CIFAR-10_human.pt"))
    assert data.x_train.shape == (5170, 3, 32, 32) and data.x_test.shape == (1017, 3, 32, 32)
    assert np.all(np.diff(data.train_index) > 0)
    rates = {k: np.mean(v != data.y_train) for k, v in data.noisy_labels.items()}
    assert rates["clean"] == 0 and 0.38 < rates["worst"] < 0.43 and 0.07 < rates["aggre"] < 0.11
    with pytest.raises(ValueError, match="is not a cifar10n file"):
        cifar10n(source=str(shared_data / "cifar10-exact-subset.npz"), labels_file=str(shared_data / "CIFAR-100_human.pt"))


def test_runner_trains_on_cifar10n_labels_through_the_cli(shared_data, cli):
    out = cli("run", "--dataset", "cifar10n", "--dataset-param", f"source={shared_data / 'cifar10-exact-subset.npz'}",
              "--dataset-param", f"labels_file={shared_data / 'CIFAR-10_human.pt'}", "--noise", "worst", "aggre",
              "--model-param", "width=0.125", "--epochs", "1", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    rates = {r["noise"]: r["realized_noise_rate"] for r in json.loads(out.stdout)}
    assert rates["worst"] == pytest.approx(0.4033, abs=1e-4) and rates["aggre"] == pytest.approx(0.0892, abs=1e-4)


def test_paper_idn_label_files_line_up_with_cifar10_from_jpeg(shared_data, cli):
    # the paper's IDN files flip exactly 40 % of the labels in the original order; any misalignment
    # with the dataset's rows would show as a rate near 90 %
    noise = f"label-file,path={shared_data / 'cifar-idn-labels.npz'},key=cifar10_0.4"
    out = cli("run", "--dataset", "cifar10", "--dataset-param", f"source={shared_data / 'cifar10-jpeg.npz'}",
              "--noise", noise, "--model-param", "width=0.125", "--epochs", "1", "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    (record,) = json.loads(out.stdout)
    assert record["realized_noise_rate"] == 0.4
