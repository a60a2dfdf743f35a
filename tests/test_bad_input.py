"""Bad input through the real CLI and estimator: a one-line error naming the value, exit 2, nothing lost."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from jal_plugins import JALClassifier, create_loss, create_noise_model
from jal_plugins.engine import Diverged
from jal_plugins.results import read_records


def assert_refused(out, *fragments, status=2):
    """Exit ``status``, exactly one stderr line that contains every fragment, and no traceback."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode == status, out.stderr
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def finished(tmp_path, cli):
    """An --out folder holding one finished run; yields (folder, the bytes of its results.jsonl)."""
    out = tmp_path / "out"
    done = cli("run", "--loss", "ce", "--epochs", "1", "--out", out)
    assert done.returncode == 0, done.stderr
    return out, (out / "results.jsonl").read_bytes()


# 1. divergence ------------------------------------------------------------------------------------
def test_a_diverging_run_is_recorded_as_diverged_and_the_command_fails(tmp_path, cli):
    out = cli("run", "--loss", "ce", "--lr", "1e8", "--set", "clip=null", "--epochs", "3", "--out", tmp_path, "--json")
    assert out.returncode == 1, out.stderr
    (record,) = read_records(tmp_path / "results.jsonl")
    assert record["status"] == "diverged" and record["diverged_epoch"] == 1 and record["test_accuracy"] is None
    assert "diverged" in out.stderr and "smaller learning rate" in out.stderr
    table = cli("run", "--loss", "ce", "--lr", "1e8", "--set", "clip=null", "--epochs", "3", "--out", tmp_path)
    assert table.returncode == 1 and "| diverged |" in table.stdout  # recorded, not trained again


def test_estimator_divergence_names_the_epoch_and_the_fix():
    x, y = np.random.default_rng(0).normal(size=(200, 5)), np.arange(200) % 2
    with pytest.raises(Diverged, match=r"epoch \d+.*smaller learning rate \(lr\)"):
        JALClassifier(loss="ce", lr=1e8, random_state=0, tune=False).set_params(epochs=5).fit(x * 1e3, y)


# 2. changed settings ---------------------------------------------------------------------------------
def test_a_changed_setting_is_a_new_run_not_the_old_record(finished, cli):
    out, _ = finished
    again = cli("run", "--loss", "ce", "--epochs", "3", "--out", out, "--json")
    assert again.returncode == 0, again.stderr
    (record,) = json.loads(again.stdout)
    assert record["epochs"] == 3 and len(read_records(out / "results.jsonl")) == 2
    keys = {r["run_id"] for r in read_records(out / "results.jsonl")}
    assert len(keys) == 2 and len(list(out.glob("runs/*/checkpoint.pt"))) == 2


# 3 and 4. non-finite inputs and labels -------------------------------------------------------------
def _npz(path, **changes):
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.normal(size=(60, 4)), "y_train": np.arange(60) % 3,
              "x_test": rng.normal(size=(12, 4)), "y_test": np.arange(12) % 3}  # fmt: skip
    arrays.update(changes)
    np.savez(path, **arrays)
    return path


@pytest.mark.parametrize("changes, fragments", [
    ({"x_train": np.where(np.arange(240).reshape(60, 4) % 50 == 7, np.nan, 1.0)}, ["x_train", "5 row(s)", "row 1"]),
    ({"x_test": np.full((12, 4), np.inf)}, ["x_test", "12 row(s)", "row 0"]),
    ({"y_train": np.r_[np.arange(59) % 3, 3.7]}, ["y_train", "3.7", "position 59"]),
    ({"y_test": np.r_[np.arange(11) % 3, 5]}, ["y_test", "0..2", "found 5"]),
])  # fmt: skip
def test_bad_arrays_in_an_npz_are_named(tmp_path, cli, changes, fragments):
    path = _npz(tmp_path / "data.npz", **changes)
    out = cli("run", "--dataset", "npz", "--dataset-param", f"path={path}", "--epochs", "1", "--out", tmp_path / "o")
    assert_refused(out, str(path), *fragments)
    assert not (tmp_path / "o" / "results.jsonl").exists()


def test_instance_noise_refuses_infinite_features(tmp_path, cli):
    np.save(tmp_path / "y.npy", np.arange(40) % 4)
    features = np.ones((40, 3))
    features[9, 1] = np.inf
    np.save(tmp_path / "f.npy", features)
    out = cli("noise", "--labels", tmp_path / "y.npy", "--noise", "instance:0.4", "--features", tmp_path / "f.npy")
    assert_refused(out, "features", "1 row(s)", "row 9")


def test_fractional_loss_targets_are_refused_not_truncated():
    loss = create_loss("ce", 3)
    with pytest.raises(ValueError, match="2.7.*position 1"):
        loss(torch.zeros(3, 3), torch.tensor([0.0, 2.7, 1.0]))
    assert loss(torch.zeros(3, 3), torch.tensor([0.0, 2.0, 1.0])).item() == pytest.approx(np.log(3))


# 5. duplicates ------------------------------------------------------------------------------------------
def test_duplicates_are_dropped_before_planning(cli):
    out = cli("run", "--loss", "jal-ce", "JAL_CE", "jal", "--seed", "0", "0", "--epochs", "1", "--json")
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == 1 and "dropped 5 duplicate run(s)" in out.stderr
    # a noise spec with its defaults spelt out (or left out) is the same run
    noises = cli("run", "--noise", "symmetric", "sym:0.40", "symmetric:0.4,exact=true", "--loss", "ce",
                 "--epochs", "1", "--json")  # fmt: skip
    assert noises.returncode == 0, noises.stderr
    (record,) = json.loads(noises.stdout)
    assert record["noise"] == "symmetric:0.4" and "dropped 2 duplicate run(s)" in noises.stderr


# 6. corrupt files in --out ---------------------------------------------------------------------------
@pytest.mark.parametrize("content, fragments", [
    ("{not json\n", ["results.jsonl line 1", "not JSON"]),
    ('{"run_id": "x"}\n{}\n', ["results.jsonl line 2", "no run_id"]),
    (None, ["results.jsonl", "is a folder"]),
])  # fmt: skip
def test_a_corrupt_results_file_is_named_with_its_line(tmp_path, cli, content, fragments):
    results = tmp_path / "results.jsonl"
    if content is None:
        results.mkdir()
    else:
        results.write_text(content)
    out = cli("run", "--loss", "ce", "--epochs", "1", "--out", tmp_path)
    assert_refused(out, *fragments)
    assert results.is_dir() if content is None else results.read_text() == content


def test_a_truncated_checkpoint_is_moved_aside_and_its_run_restarts(finished, cli):
    out, _ = finished
    (checkpoint,) = out.glob("runs/*/checkpoint.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])
    (out / "results.jsonl").unlink()  # the run is unfinished again, with a broken checkpoint
    again = cli("run", "--loss", "ce", "--epochs", "1", "--out", out, "--json")
    assert again.returncode == 0, again.stderr
    assert "warning" in again.stderr and "checkpoint.pt.corrupt" in again.stderr
    assert (checkpoint.parent / "checkpoint.pt.corrupt").is_file() and checkpoint.is_file()
    assert json.loads(again.stdout)[0]["epochs"] == 1


# 7 and 8. one-line errors instead of tracebacks; nonsense refused --------------------------------
@pytest.mark.parametrize("args, fragments", [
    (["run", "--device", "tpu"], ["device='tpu'"]),
    (["run", "--workers", "0"], ["--workers", "value=0"]),
    (["run", "--workers", "-2"], ["--workers", "value=-2"]),
    (["run", "--noise", "symmetric:0.4,exact=nope"], ["exact='nope'"]),
    (["run", "--stack", "0"], ["--stack", "0"]),
    (["run", "--stack", "-1"], ["--stack", "-1"]),
    (["run", "--stack", "many"], ["--stack", "'many'"]),
    (["run", "--model", "resnet34", "--model-param", "width=4", "--seed", "0", "1", "--stack", "2"],
     ["--stack 2", "GiB", "use --stack 1 or less"]),
    (["bound", "--noise", "symmetric:0.4", "--classes", "1"], ["classes=1"]),
    (["bound", "--noise", "symmetric:0.4", "--classes", "0"], ["classes=0"]),
    (["bound", "--noise", "symmetric:0.4", "--classes", "10", "--q", "0"], ["--q", "value=0"]),
])  # fmt: skip
def test_nonsense_options_are_refused_on_one_line(cli, args, fragments):
    assert_refused(cli(*args, "--epochs", "1") if args[0] == "run" else cli(*args), *fragments)


def test_files_that_cannot_be_used_are_named(tmp_path, cli, finished):
    out, before = finished
    (tmp_path / "bad.pt").write_bytes(b"not a zip archive")
    assert_refused(cli("noise", "--labels", tmp_path / "bad.pt", "--noise", "symmetric:0.2"), "bad.pt", "not a zip")
    a_file = tmp_path / "afile"
    a_file.write_text("x")
    assert_refused(cli("run", "--epochs", "1", "--out", a_file), str(a_file), "is a file")
    assert_refused(cli("run", "--epochs", "1", "--out", "/proc/jal-plugins-out"), "/proc/jal-plugins-out")
    np.save(tmp_path / "y.npy", np.arange(20) % 2)
    refused = cli("noise", "--labels", tmp_path / "y.npy", "--noise", "symmetric:0.2", "--out", a_file / "x.npy")
    assert_refused(refused, "x.npy", "not an existing folder")
    assert (out / "results.jsonl").read_bytes() == before


@pytest.mark.parametrize("q", [0, -1.5])
def test_amse_min_a_refuses_a_q_that_is_not_positive(q):
    from jal_plugins.theory import amse_min_a

    t = create_noise_model("symmetric", rate=0.4).transition_matrix(10)
    with pytest.raises(ValueError, match=f"q={q!r}"):
        amse_min_a(t, q=q)


@pytest.mark.parametrize("before", [True, False])
def test_debug_shows_the_traceback_before_or_after_the_command(cli, before):
    from jal_plugins.cli import build_parser

    args = ["run", "--device", "tpu", "--epochs", "1"]
    out = cli(*(["--debug", *args] if before else [*args, "--debug"]))
    assert out.returncode == 1 and "Traceback" in out.stderr and "device='tpu'" in out.stderr, out.stderr
    assert build_parser().parse_args(["--debug", *args] if before else [*args, "--debug"]).debug
    assert not build_parser().parse_args(args).debug


def test_a_rate_left_out_is_recorded_as_the_models_default(cli):
    out = cli("run", "--noise", "symmetric", "--loss", "ce", "--epochs", "1", "--json")
    assert out.returncode == 0, out.stderr
    (record,) = json.loads(out.stdout)
    assert record["noise_rate"] == 0.4 and record["realized_noise_rate"] > 0.3


# 9. any registered network on any dataset --------------------------------------------------------
def test_overriding_the_network_builds_it_for_the_datasets_input(cli, tmp_path):
    out = cli("run", "--model", "mlp", "--loss", "ce", "--epochs", "2", "--json")
    assert out.returncode == 0, out.stderr
    (record,) = json.loads(out.stdout)
    assert record["model"] == "mlp" and record["test_accuracy"] > 0.5
    missing = cli("run", "--model", "resnet50", "--epochs", "1")
    assert_refused(missing, "resnet50", "3-channel")
    path = _npz(tmp_path / "features.npz")  # feature vectors: an image network is refused, not half-built
    for model in ("cnn4", "resnet34"):
        refused = cli("run", "--dataset", "npz", "--dataset-param", f"path={path}", "--model", model, "--epochs", "1",
                      "--out", tmp_path / "o")  # fmt: skip
        assert_refused(refused, f"model {model} needs images (C, H, W)", "feature vectors of 4 features")
        assert not (tmp_path / "o" / "results.jsonl").exists()


# 10. several commands into one --out ----------------------------------------------------------------
COUNTING_PLUGIN = """
import os
from jal_plugins import hookimpl


def counting(context):
    '''ERM that notes every training it starts in $TRAINING_LOG (one line per run).'''
    with open(os.environ["TRAINING_LOG"], "a") as log:
        log.write(f"{context.loss} {context.seed} {os.getpid()}\\n")
    return context.trainer()


@hookimpl
def register_methods(register):
    register("counting", counting)
"""


def test_several_processes_on_one_out_train_and_record_each_run_once(tmp_path, make_dist, env):
    make_dist(tmp_path, "counting-method", "1.0", "counting_plugin", COUNTING_PLUGIN)
    log = tmp_path / "trainings.log"
    env = {**env, "PYTHONPATH": f"{tmp_path}:{env.get('PYTHONPATH', '')}", "TRAINING_LOG": str(log)}
    out = tmp_path / "shared"
    args = [sys.executable, "-m", "jal_plugins", "run", "--method", "counting", "--loss", "ce", "jal-ce",
            "--seed", "0", "1", "--epochs", "4", "--out", str(out), "--json"]  # fmt: skip
    procs = [subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=600) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outputs]
    trainings = log.read_text().splitlines()
    assert len(trainings) == 4 and len({t.rsplit(" ", 1)[0] for t in trainings}) == 4, trainings
    records = read_records(out / "results.jsonl")
    assert len(records) == 4 and len({r["run_id"] for r in records}) == 4
    for stdout, _ in outputs:  # every command reports all four runs, the ones others trained included
        assert sorted(r["run_id"] for r in json.loads(stdout)) == sorted(r["run_id"] for r in records)
