"""The plugin host with real entry points: a tiny third-party distribution put on sys.path."""

import importlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import CUBIC_MAE

import jal_plugins
from jal_plugins import plugins
from jal_plugins.cli import main
from jal_plugins.plugins import NameConflictWarning, PluginHost, PluginWarning

GOOD = '''
import numpy as np
from jal_plugins import hookimpl
from jal_plugins.losses import Loss
from jal_plugins.losses.base import probs, target_column


''' + CUBIC_MAE + '''

class Reverse:
    def apply(self, labels, num_classes=None, seed=None, features=None):
        labels = np.asarray(labels, dtype=np.int64)
        return (num_classes or int(labels.max()) + 1) - 1 - labels

    def transition_matrix(self, num_classes):
        return np.eye(num_classes)[::-1]


@hookimpl
def register_losses(register):
    register("cubic-mae", CubicMAE, aliases=("mae3",))
    register("ce", CubicMAE)  # clashes with the built-in


@hookimpl
def register_noise_models(register):
    register("reverse", Reverse)
'''


@pytest.fixture
def site(tmp_path, monkeypatch, make_dist):
    _dist = make_dist
    _dist(tmp_path, "thirdparty-jal", "1.2.3", "thirdparty_jal_plugin", GOOD)
    _dist(tmp_path, "broken-jal", "0.1", "broken_jal_plugin", "raise ImportError('no such backend')\n")
    _dist(tmp_path, "failing-jal", "0.2", "failing_jal_plugin",
          "from jal_plugins import hookimpl\n@hookimpl\ndef register_losses(register):\n    raise RuntimeError('boom')\n")  # fmt: skip
    _dist(tmp_path, "typo-jal", "0.3", "typo_jal_plugin",
          "from jal_plugins import hookimpl\n@hookimpl\ndef register_loses(register):\n    pass\n")  # fmt: skip
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    plugins.reset()
    yield tmp_path
    plugins.reset()


def _load(**kwargs):
    host = PluginHost(**kwargs)
    with pytest.warns(PluginWarning) as record:
        host.load()
    return host, [str(w.message) for w in record]


def test_third_party_entries_are_listed_with_their_provider(site):
    host, messages = _load()
    assert host["losses"].providers()["cubic-mae"] == "thirdparty-jal"
    assert host["noise_models"].providers()["reverse"] == "thirdparty-jal"
    assert host["losses"].get("MAE3").version == "1.2.3"
    # built-ins win the clash, and the warning names both providers
    assert host["losses"].providers()["ce"] == "jal-plugins"
    assert any("'ce'" in m and "thirdparty-jal" in m and "jal-plugins" in m for m in messages)
    # each broken plugin is a warning naming it; the rest still loads
    assert any("broken-jal" in m and "no such backend" in m for m in messages)
    assert any("failing-jal" in m and "boom" in m for m in messages)
    assert any("typo-jal" in m and "register_loses" in m for m in messages)
    assert len(host["losses"].entries) == 27


def test_public_api_uses_third_party_plugins(site):
    with pytest.warns(PluginWarning):
        assert jal_plugins.list_losses()["cubic-mae"] == "thirdparty-jal"
    loss = jal_plugins.create_loss("cubic_mae", 4, reduction="none", power=2.0)
    z, y = torch.zeros(2, 4), torch.tensor([0, 1])
    torch.testing.assert_close(loss(z, y), torch.full((2,), 0.75**2))
    noisy = jal_plugins.create_noise_model("reverse").apply([0, 1, 2], num_classes=3)
    assert noisy.tolist() == [2, 1, 0]
    assert jal_plugins.list_noise_models()["reverse"] == "thirdparty-jal"


def test_clash_warning_class(site):
    with pytest.warns(NameConflictWarning, match="thirdparty-jal"):
        PluginHost().load()


def test_disable_autoload(site, monkeypatch):
    monkeypatch.setenv("JAL_PLUGINS_DISABLE_AUTOLOAD", "1")
    host = PluginHost()
    host.load()  # no entry points: no warnings either
    assert "cubic-mae" not in host["losses"].entries
    assert set(host.versions()) == {"jal-plugins"}


def test_load_only_named_distributions(site, monkeypatch):
    monkeypatch.setenv("JAL_PLUGINS_LOAD", "thirdparty_jal")
    host, messages = _load()
    assert "cubic-mae" in host["losses"].entries
    assert not any("broken-jal" in m for m in messages)
    monkeypatch.setenv("JAL_PLUGINS_LOAD", "broken-jal")
    host, messages = _load()
    assert "cubic-mae" not in host["losses"].entries and any("broken-jal" in m for m in messages)


def test_cli_list_shows_providers(site, capsys):
    with pytest.warns(PluginWarning):
        assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "cubic-mae" in out and "thirdparty-jal" in out and "1.2.3" in out and "jal-ce" in out


def test_cli_noise_with_third_party_model(site, tmp_path, capsys):
    labels = tmp_path / "labels.npy"
    np.save(labels, np.arange(10) % 5)
    out = tmp_path / "noisy.npy"
    with pytest.warns(PluginWarning):
        assert main(["noise", "--labels", str(labels), "--noise", "reverse", "--out", str(out)]) == 0
    assert np.load(out).tolist() == [4, 3, 2, 1, 0] * 2
    assert "overall noise rate: 80.0000%" in capsys.readouterr().out


def test_builtins_load_without_installed_metadata(monkeypatch):
    monkeypatch.setenv("JAL_PLUGINS_DISABLE_AUTOLOAD", "1")
    host = PluginHost()
    assert len(host["losses"].entries) == 26 and "jal-ce" in host["losses"].entries


def test_console_script_lists_catalogue():
    out = subprocess.run([sys.executable, "-m", "jal_plugins", "list"], capture_output=True, text=True, check=True)
    assert "jal-ce" in out.stdout and "symmetric" in out.stdout and "jal-plugins" in out.stdout


def test_import_is_lazy():
    code = "import sys, jal_plugins; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
