"""Every loss tuned the same way: declared domains, search spaces of one budget, auto for any parameter."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import CUBIC_MAE

from jal_plugins import JALClassifier, create_loss, list_losses
from jal_plugins.domains import domains_of
from jal_plugins.plugins import host
from jal_plugins.registry import load
from jal_plugins.selection import Selection, choose, parse, search_settings


def test_every_built_in_loss_declares_domains_that_hold_its_defaults_and_presets():
    presets = load()["presets"]
    for name in list_losses():
        domains = domains_of(host()["losses"].get(name).factory)
        for preset in presets.values():
            for key, value in preset.get("losses", {}).get(name, {}).items():
                assert key in domains and value in domains[key], (name, key, value)
        create_loss(name, 10)  # its own defaults pass


@pytest.mark.parametrize("loss, params, fragment", [
    ("gce", {"q": 2}, "q=2 is outside its domain q (0, 1]"),
    ("nce+rce", {"beta": -1}, "beta=-1 is outside its domain beta > 0"),
    ("jal-ce", {"a": 0.5}, "a=0.5 is outside its domain a >= 1"),
    ("aul", {"a": 1.0}, "a=1.0 is outside its domain a > 1"),
])  # fmt: skip
def test_a_value_outside_its_domain_is_refused_with_the_domain(loss, params, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace("]", r"\]")):
        create_loss(loss, 10, **params)


def test_every_built_in_space_has_the_budget_and_stays_inside_the_domains():
    budget = search_settings()["budget"]
    for name in list_losses():
        fixed, selection = parse(name, {"auto": True})
        candidates = selection.candidates(fixed, {})
        assert len(candidates) == budget, (name, len(candidates))
        domains = domains_of(host()["losses"].get(name).factory)
        for candidate in candidates:
            create_loss(name, 10, **candidate["loss_params"])
            assert set(candidate["loss_params"]) <= set(domains) and set(candidate["config"]) <= {"weight_decay", "l1"}


def test_ties_go_to_the_later_candidate_only_within_a_standard_error():
    rng = np.random.default_rng(0)
    best = torch.as_tensor(rng.random(1000) < 0.80).double()
    right, wrong = torch.nonzero(best).flatten(), torch.nonzero(1 - best).flatten()
    near, far = best.clone(), best.clone()
    near[right[:30]], near[wrong[:25]] = 0, 1  # 0.5 point lower over 55 rows that differ: SE 0.74 point
    far[right[:60]] = 0  # 6 points lower: clearly worse
    assert choose([best, near], "best") == 0 and choose([best, near], "later") == 1
    assert choose([best, far], "later") == 0 and choose([near, best, None], "later") == 1
    assert choose([None, None], "later") is None


def test_auto_marks_what_is_searched_and_keeps_what_is_fixed():
    fixed, gce = parse("gce", {"q": "auto"})
    assert fixed == {} and gce.searched == ("q",) and {c["loss_params"]["q"] for c in gce.candidates({}, {})} == {0.3, 0.5, 0.7, 0.9}
    _, pairs = parse("nce+rce", {"auto": True})
    assert pairs.searched == ("alpha", "beta")
    fixed, jal = parse("jal", {"a": "auto", "beta": 1.0})  # an alias; beta stays as given
    assert jal.loss == "jal-ce" and fixed == {"beta": 1.0} and {c["loss_params"]["beta"] for c in jal.candidates(fixed, {})} == {1.0}
    _, ce = parse("ce", {"auto": True})
    assert ce.searched == () and len({c["config"]["weight_decay"] for c in ce.candidates({}, {})}) == 8
    assert parse("gce", {"q": 0.5}, default=True) == ({"q": 0.5}, None)  # a given parameter opts out
    assert parse("gce", {}, method="co-teaching", default=True) == ({}, None)  # only erm searches
    assert isinstance(parse("gce", {}, default=True)[1], Selection)


@pytest.mark.parametrize("loss, params, fragment", [
    ("ce", {"q": "auto"}, "ce declares no domain for 'q'"),
    ("gce", {"z": "auto"}, "gce declares no domain for 'z' (its parameters: q)"),
    ("anl-ce", {"min_prob": "auto"}, "the search space of anl-ce does not vary 'min_prob'"),
    ("gce", {"auto": "yes"}, "auto='yes'"),
])  # fmt: skip
def test_auto_on_what_cannot_be_searched_names_the_loss_and_parameter(loss, params, fragment):
    with pytest.raises(ValueError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        parse(loss, params)
    with pytest.raises(ValueError, match="method erm"):
        parse("gce", {"q": "auto"}, method="co-teaching")


def test_the_estimator_tunes_any_loss_by_default_and_opts_out(noisy_digits):
    x, noisy, *_ = noisy_digits
    gce = JALClassifier(loss="gce", epochs=6, random_state=0).fit(x, noisy)
    assert gce.best_params_["q"] in (0.3, 0.5, 0.7, 0.9) and len(gce.candidates_) == len(gce.selection_scores_) == 8
    assert gce.best_params_ in [{**c["loss_params"], **c["config"]} for c in gce.candidates_]
    assert not hasattr(gce, "a_") and 0 < gce.temperature_
    info = gce.trainer_.info(0)  # GCE's space runs from the least to the most robust q: ties go later
    assert info["ties"] == "later" and info["candidates"].index(info["chosen"]) == info["choices"]["noisy-accuracy/later"]
    for opted_out in (JALClassifier(loss="gce", tune=False, epochs=2), JALClassifier(loss="gce", loss_params={"q": 0.5}, epochs=2)):
        assert not hasattr(opted_out.fit(x, noisy), "best_params_")
    with pytest.raises(ValueError, match="tune='no'"):
        JALClassifier(tune="no", epochs=1).fit(x, noisy)


def test_tune_on_the_command_line_gives_every_loss_the_same_budget_and_says_so(cli, tmp_path):
    out = cli("run", "--model", "mlp", "--noise", "symmetric:0.4,exact=false", "--loss", "ce", "gce,q=0.5", "--tune",
              "--epochs", "2", "--out", tmp_path, "--json")  # fmt: skip
    assert out.returncode == 0, out.stderr
    records = json.loads(out.stdout)
    assert [r["search"]["candidates"] for r in records] == [8, 2]  # q given: its two regularisation variants
    assert records[0]["search"]["searched"] == [] and records[1]["method_info"]["chosen"]["loss_params"]["q"] == 0.5
    table = cli("run", "--model", "mlp", "--noise", "symmetric:0.4,exact=false", "--loss", "ce", "--tune", "--epochs", "2",
                "--out", tmp_path)  # fmt: skip
    assert "| noise | ce (tuned, 8 candidates) |" in table.stdout


def test_a_suite_block_can_tune_and_a_bad_suite_file_names_its_line(cli, tmp_path):
    suite = tmp_path / "mine.toml"
    suite.write_text('[suites.mine]\nseeds = 1\n[[suites.mine.grid]]\ndataset = "digits"\nmodel = "mlp"\n'
                     'config = { epochs = 2 }\nnoises = ["symmetric:0.4,exact=false"]\nlosses = ["gce"]\ntune = true\n')  # fmt: skip
    out = cli("bench", str(suite), "--out", tmp_path / "b", "--json")
    assert out.returncode == 0, out.stderr
    (record,) = json.loads(out.stdout)["records"]
    assert record["search"]["candidates"] == 8
    suite.write_text('[suites.mine]\nseeds = 1\n[[suites.mine.grid]\n')
    bad = cli("bench", str(suite))
    assert bad.returncode == 2 and "mine.toml" in bad.stderr and "line 3" in bad.stderr, bad.stderr


PLUGIN = """
from jal_plugins import hookimpl
from jal_plugins.domains import POSITIVE
from jal_plugins.losses import Loss
from jal_plugins.losses.base import probs, target_column
""" + CUBIC_MAE + """

class SpacedMAE(CubicMAE):
    domains = {"power": POSITIVE}
    space = {"power": [1.0, 2.0, 3.0, 4.0]}


class SidewaysMAE(SpacedMAE):
    space = {"power": [1.0, 2.0, 3.0, 4.0], "ties": "sideways"}


@hookimpl
def register_losses(register):
    register("cubic-mae", CubicMAE)
    register("spaced-mae", SpacedMAE)
    register("sideways-mae", SidewaysMAE)
"""


def test_a_plugin_loss_declares_its_space_or_is_tuned_over_the_regularisation_only(tmp_path, make_dist, env):
    make_dist(tmp_path, "spaced-jal", "0.1", "spaced_jal_plugin", PLUGIN)
    env = {**env, "PYTHONPATH": f"{tmp_path}:{env.get('PYTHONPATH', '')}"}
    run = [sys.executable, "-m", "jal_plugins", "run", "--model", "mlp", "--epochs", "1", "--json"]
    spaced = subprocess.run([*run, "--loss", "spaced-mae,power=auto"], capture_output=True, text=True, env=env, timeout=300)
    assert spaced.returncode == 0, spaced.stderr
    assert json.loads(spaced.stdout)[0]["method_info"]["chosen"]["loss_params"]["power"] in (1.0, 2.0, 3.0, 4.0)
    plain = subprocess.run([*run, "--loss", "cubic-mae,auto"], capture_output=True, text=True, env=env, timeout=300)
    assert plain.returncode == 0 and "tuned over the regularisation only" in plain.stderr, plain.stderr
    assert json.loads(plain.stdout)[0]["search"]["candidates"] == 8
    # the regularisation runs from none to the strongest, so a tie goes to the stronger
    assert json.loads(plain.stdout)[0]["method_info"]["ties"] == "later"
    sideways = subprocess.run([*run, "--loss", "sideways-mae,auto"], capture_output=True, text=True, env=env, timeout=300)
    assert sideways.returncode == 2 and "unknown ties 'sideways'" in sideways.stderr, sideways.stderr
    refused = subprocess.run([*run, "--loss", "cubic-mae,power=auto"], capture_output=True, text=True, env=env, timeout=300)
    assert refused.returncode == 2 and "cubic-mae declares no domain for 'power'" in refused.stderr, refused.stderr
