"""``jal-plugins bench``: every declared suite resolves, and a small suite runs, reports and resumes."""

import json

import pytest

from jal_plugins import create_loss
from jal_plugins.bench import list_suites, suite_jobs
from jal_plugins.datasets.cifar import LABEL_SETS
from jal_plugins.plugins import host
from jal_plugins.results import read_records
from jal_plugins.specs import parse_spec

REAL_LABEL_SETS = {s for sets in LABEL_SETS.values() for s in sets}


@pytest.mark.parametrize("suite", sorted(list_suites()))
def test_every_declared_suite_names_real_things(suite):
    jobs, labels, paper = suite_jobs(suite, data="DATA")
    assert jobs and len({job.key() for job in jobs}) == len(jobs)
    for job in jobs:
        host()["datasets"].get(job.dataset)
        host()["methods"].get(job.method)
        create_loss(job.loss, 10, preset="cifar10")
        name, params = parse_spec(job.noise)
        assert name in REAL_LABEL_SETS or name == "none" or host()["noise_models"].get(name)
        assert "{data}" not in json.dumps(job.dataset_params) + job.noise
    measured = {(j.dataset, labels[j.noise], j.method, j.loss) for j in jobs}
    for key in paper:
        assert key[:2] in {m[:2] for m in measured}, f"paper number for {key} matches no cell of {suite}"


def test_cpu_suites_fit_their_declared_shape():
    jobs, _, _ = suite_jobs("cpu-cifar10n", data="DATA")
    assert {j.noise for j in jobs} == {"worst"} and all(j.model_params == {"width": 0.25} for j in jobs)
    assert jobs[0].dataset_params["source"] == "DATA/cifar10-exact-subset.npz"
    jobs, _, _ = suite_jobs("cpu-fashion-mnist", seeds=1, data="DATA")
    assert {j.noise for j in jobs} == {"symmetric:0.8"} and len(jobs) == 3


def test_cifar_n_suite_compares_methods_and_takes_per_dataset_overrides():
    jobs, _, _ = suite_jobs("cifar-n", seeds=1, dataset_params={"cifar10n.source": "c10.npz", "cache_dir": "C"})
    pairs = {(j.method, j.loss) for j in jobs}
    assert pairs == {("erm", "ce"), ("erm", "nce+rce"), ("erm", "jal-ce"), ("co-teaching", "ce"),
                     ("cleanlab-prune", "ce"), ("cleanlab-prune", "jal-ce"), ("dividemix", "ce"),
                     ("dividemix", "jal-ce"), ("elr", "ce"), ("elr", "jal-ce")}  # fmt: skip
    params = {j.dataset: j.dataset_params for j in jobs}
    assert params["cifar10n"]["source"] == "c10.npz" and "source" not in params["cifar100n"]
    assert params["cifar100n"]["cache_dir"] == params["cifar10n"]["cache_dir"] == "C"


def test_cifar_n_leaderboard_figures_sit_beside_their_methods_marked_best_epoch():
    from jal_plugins.bench import load_suite, paper_figures, report

    _, _, paper = suite_jobs("cifar-n", seeds=1)
    assert paper[("cifar10n", "worst", "dividemix", "ce")] == 92.56
    assert paper[("cifar100n", "noisy", "elr", "ce")] == 58.94
    assert paper[("cifar10n", "aggre", "erm", "ce")] == 87.77
    assert paper[("cifar10n", "worst", "erm", "jal-ce")] == 81.33  # the JAL paper's, a plain loss row
    notes = paper_figures(load_suite("cifar-n")[1])[1]
    assert notes[("cifar10n", "random1", "dividemix", "ce")] == "best epoch"
    assert ("cifar10n", "worst", "erm", "jal-ce") not in notes
    record = {"dataset": "cifar10n", "noise": "worst", "method": "dividemix", "loss": "ce", "seed": 0,
              "test_accuracy": 0.9, "device": "cpu"}  # fmt: skip
    table = report("cifar-n", [record, {**record, "method": "erm", "loss": "jal-ce"}], {}, paper, 1.0)["table"]
    assert "| cifar10n | worst | dividemix | ce | 1 | 90.0 ± 0.0 | 92.56 (best epoch) | -2.6 |" in table
    assert "| 81.33 |" in table


SUITE = """
[suites.tiny]
description = "digits smoke suite"
seeds = 3

[[suites.tiny.grid]]
dataset = "digits"
noises = [{ label = "sym 40%", spec = "symmetric:0.4,exact=false" }]
losses = ["ce", "jal-ce"]
config = { epochs = 3 }

[suites.tiny.paper.digits]
"jal-ce" = { "sym 40%" = 90.0 }
"""


def test_bench_runs_a_suite_file_reports_beside_the_paper_and_resumes(tmp_path, cli):
    suite = tmp_path / "tiny.toml"
    suite.write_text(SUITE)
    out = tmp_path / "bench"
    args = ("bench", str(suite), "--seeds", "2", "--out", str(out), "--device", "cpu", "--workers", "1")
    first = cli(*args, "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert len(report["records"]) == 4
    rows = {r["loss"]: r for r in report["rows"]}
    assert rows["jal-ce"]["paper"] == 90.0 and rows["jal-ce"]["runs"] == 2
    assert rows["jal-ce"]["delta"] == pytest.approx(rows["jal-ce"]["mean"] - 90.0, abs=0.011)
    assert rows["ce"]["paper"] is None and rows["ce"]["noise"] == "sym 40%"
    assert (out / "bench.png").stat().st_size > 0
    assert "| digits | sym 40% | erm | jal-ce | 2 |" in (out / "bench.md").read_text()
    stamp = (out / "results.jsonl").stat().st_mtime_ns
    again = cli(*args)
    assert again.returncode == 0 and "90.00" in again.stdout
    assert (out / "results.jsonl").stat().st_mtime_ns == stamp and len(read_records(out / "results.jsonl")) == 4


def test_bench_errors_are_one_line(tmp_path, cli):
    out = cli("bench", "paper-cifar1O")
    assert out.returncode == 2 and "unknown suite 'paper-cifar1O'" in out.stderr
    out = cli("bench", str(tmp_path / "missing.toml"))
    assert out.returncode == 2 and "missing.toml" in out.stderr and "Traceback" not in out.stderr
    listing = cli("bench", "list")
    assert listing.returncode == 0 and "cpu-cifar10n" in listing.stdout

