"""--executor ray on a real local Ray cluster (started once for the module), and TensorBoard curves.

The cluster is `ray start --head --block` in a subprocess on this machine, with 2 CPUs; the CLI joins
it as a driver. Records must equal the local executor's; killed workers and drivers must lose at
most one epoch per run and record nothing twice.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch  # noqa: F401 - imported now, so that watching a run's checkpoints never waits for it

from conftest import checkpoints

from jal_plugins.results import read_records

pytest.importorskip("ray")
pytest.importorskip("tensorboard")

GRID = ["run", "--model", "mlp", "--noise", "symmetric:0.4,exact=false", "--loss", "ce", "jal-ce",
        "--method", "erm", "co-teaching", "--seed", "0", "1", "--epochs", "3", "--stack", "2", "--tensorboard"]  # fmt: skip
TASK = b"ray::jal-plugins train_runs"  # the process title of a Ray worker training a unit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_env(env):
    """The CLI's environment, without Ray's token authentication: no token is read from or written
    to the home folder (Ray >= 2.5x enables it when ~/.ray/auth_token exists)."""
    return {**{k: v for k, v in env.items() if k != "RAY_ADDRESS"}, "RAY_AUTH_MODE": "disabled"}


@pytest.fixture(scope="module")
def cluster(ray_env):
    """A Ray head node with 2 CPUs: its GCS address, Ray Client address and `ray start` process."""
    temp = tempfile.mkdtemp(prefix="jr", dir="/tmp")  # Ray's socket paths must stay short
    port, client = _free_port(), _free_port()
    log = Path(temp) / "start.log"
    command = [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block", f"--port={port}",
               f"--ray-client-server-port={client}", f"--dashboard-port={_free_port()}",
               f"--dashboard-agent-listen-port={_free_port()}", "--num-cpus=2", "--num-gpus=0",
               "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats",
               f"--temp-dir={temp}"]  # fmt: skip
    with log.open("w") as fh:
        proc = subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=ray_env)
    deadline = time.time() + 90
    while "Ray runtime started" not in log.read_text() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    if "Ray runtime started" not in log.read_text():
        proc.kill()
        pytest.fail(f"ray start failed:\n{log.read_text()[-3000:]}")
    yield {"address": f"127.0.0.1:{port}", "client": f"ray://127.0.0.1:{client}", "pid": proc.pid, "temp": temp}
    proc.send_signal(signal.SIGTERM)  # --block: stops exactly the processes it started
    proc.wait(timeout=60)
    shutil.rmtree(temp, ignore_errors=True)


def _descends(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


def _task_pids(cluster) -> list[int]:
    """PIDs of this cluster's Ray workers that are training a unit now."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "cmdline").read_bytes().startswith(TASK):
                pids.append(int(entry.name))
        except OSError:
            continue
    return [pid for pid in pids if _descends(pid, cluster["pid"])]


def _records(out: Path) -> dict[str, dict]:
    records = read_records(out / "results.jsonl")
    assert len({r["run_id"] for r in records}) == len(records), "a run was recorded twice"
    return {r["run_id"]: r for r in records}


def _histories(out: Path) -> dict[str, list]:
    return {run: state["history"] for run, state in checkpoints(out).items()}


def _scalars(out: Path) -> dict[str, dict[str, list]]:
    """{run_id: {tag: [(step, value)]}} read back from the event files under out/tensorboard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found = {}
    for owner in out.glob("tensorboard/**/.jal-run-id"):
        events = EventAccumulator(str(owner.parent))
        events.Reload()
        found[owner.read_text()] = {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}
    return found


def _wait(condition, seconds=300, what="condition"):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


def test_ray_records_and_curves_equal_the_local_executors(cluster, tmp_path, cli, ray_env):
    local = cli(*GRID, "--out", tmp_path / "local", env=ray_env)
    assert local.returncode == 0, local.stderr
    ray = cli(*GRID, "--out", tmp_path / "ray", "--executor", "ray", "--address", cluster["address"], env=ray_env)
    assert ray.returncode == 0, ray.stderr
    assert "2 task(s) at a time" in ray.stderr
    expected, got = _records(tmp_path / "local"), _records(tmp_path / "ray")
    assert len(got) == 8 and got.keys() == expected.keys()
    for run_id, record in expected.items():
        assert {**got[run_id], "seconds": 0} == {**record, "seconds": 0}
    assert sorted(r["stack_size"] for r in got.values()) == [1, 1, 1, 1, 2, 2, 2, 2]
    local_curves, ray_curves = _scalars(tmp_path / "local"), _scalars(tmp_path / "ray")
    assert ray_curves == local_curves and len(ray_curves) == 8
    for run_id, tags in ray_curves.items():
        assert set(tags) == {"loss/train", "accuracy/train", "accuracy/test", "lr"}
        assert all([step for step, _ in values] == [1, 2, 3] for values in tags.values())
        assert tags["accuracy/test"][-1][1] == pytest.approx(got[run_id]["test_accuracy"], abs=1e-6)
    root = tmp_path / "ray" / "tensorboard"
    names = {p.parent.relative_to(root).as_posix() for p in root.glob("**/.jal-run-id")}
    assert "digits/symmetric:0.4,exact=false/jal-ce/co-teaching/1" in names and len(names) == 8


def test_killed_worker_is_retried_and_resumes(cluster, tmp_path, ray_env):
    out = tmp_path / "run"
    epochs = 600  # long enough that neither run ends before the other's worker has started
    args = ["run", "--model", "mlp", "--loss", "ce", "jal-ce", "--epochs", epochs, "--stack", "2", "--tensorboard",
            "--out", out, "--executor", "ray", "--address", cluster["address"]]  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "jal_plugins", *map(str, args)], env=ray_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    # the two runs are two units, one per CPU of the cluster, both training when they are killed
    _wait(lambda: len(h := _histories(out)) == 2 and min(map(len, h.values())) >= 3 and len(_task_pids(cluster)) == 2,
          what="two checkpoints from two tasks")  # fmt: skip
    pids = _task_pids(cluster)
    before = _histories(out)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert len(pids) == 2
    records = _records(out)
    assert len(records) == 2 and all(r["epochs"] == epochs for r in records.values())
    for run_dir in out.glob("runs/*"):
        curve = json.loads((run_dir / "curve.json").read_text())
        assert [c["epoch"] for c in curve] == list(range(1, epochs + 1))
        assert 3 <= len(before[run_dir.name]) < epochs  # killed mid-run ...
        assert curve[: len(before[run_dir.name])] == before[run_dir.name]  # ... and resumed (same seconds)
    for tags in _scalars(out).values():  # the retry rewrote the curves: every epoch once
        assert all([step for step, _ in values] == list(range(1, epochs + 1)) for values in tags.values())


def test_killed_driver_rerun_records_nothing_twice(cluster, tmp_path, ray_env):
    out = tmp_path / "grid"
    args = ["run", "--model", "mlp", "--loss", "ce", "gce", "jal-ce", "--epochs", "100", "--stack", "1", "--out", out,
            "--executor", "ray", "--workers", "1"]  # fmt: skip
    env = {**ray_env, "RAY_ADDRESS": cluster["address"]}  # --address auto joins RAY_ADDRESS
    command = [sys.executable, "-m", "jal_plugins", *map(str, args)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def some_recorded_some_half_done():
        recorded = {r["run_id"] for r in read_records(out / "results.jsonl")}
        half = [name for name, h in _histories(out).items() if h and not any(name.endswith(k) for k in recorded)]
        return recorded and half

    _wait(some_recorded_some_half_done, what="a recorded run and a half-trained one")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    text, before = (out / "results.jsonl").read_text(), _histories(out)
    _wait(lambda: not _task_pids(cluster), seconds=60, what="Ray to end the dead driver's tasks")
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "1 task(s) at a time" in again.stderr  # --workers caps the tasks in flight
    records = _records(out)
    assert len(records) == 3 and (out / "results.jsonl").read_text().startswith(text)
    for name, history in before.items():
        curve = json.loads((out / "runs" / name / "curve.json").read_text())
        assert [c["epoch"] for c in curve] == list(range(1, 101))
        assert curve[: len(history)] == history  # resumed from its checkpoint: at most one epoch lost


def test_ray_client_address(cluster, tmp_path, cli, ray_env):
    out = cli("run", "--model", "mlp", "--loss", "ce", "--epochs", "2", "--executor", "ray", "--address", cluster["client"],
              "--json", "--out", tmp_path, env=ray_env)  # fmt: skip
    logs = "".join(f"\n--- {p.name}\n{p.read_text()[-2000:]}"
                   for p in Path(cluster["temp"]).glob("session_*/logs/ray_client_server*"))
    assert out.returncode == 0, out.stderr + logs  # the head's Ray Client logs say why it refused
    (record,) = json.loads(out.stdout)
    assert _records(tmp_path) == {record["run_id"]: record}


def test_auto_starts_a_local_cluster_when_none_runs(tmp_path, cli, ray_env):
    out = cli("run", "--model", "mlp", "--loss", "ce", "--epochs", "2", "--executor", "ray", "--json", "--out", tmp_path,
              env=ray_env)  # fmt: skip
    assert out.returncode == 0, out.stderr
    (record,) = json.loads(out.stdout)
    assert record["epochs"] == 2 and _records(tmp_path)[record["run_id"]] == record
    assert not list(tmp_path.glob(".ray-driver-*"))  # the driver's marker is removed with it


def _one_line(out, *fragments):
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_unknown_executor_lists_the_choices(cli):
    _one_line(cli("run", "--epochs", "1", "--executor", "nope"), "'nope'", "local", "ray")


@pytest.mark.parametrize("scheme", ["", "ray://"])
def test_an_address_that_does_not_answer_is_named_within_30_s(scheme, cli):
    address = f"{scheme}127.0.0.1:{_free_port()}"  # nothing listens there
    _one_line(cli("run", "--epochs", "1", "--executor", "ray", "--address", address, timeout=30), address)


def test_an_address_that_answers_without_ray_is_named_within_30_s(cli):
    with socket.socket() as listener:  # accepts connections (the kernel's backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        start = time.monotonic()
        out = cli("run", "--epochs", "1", "--executor", "ray", "--address", address, timeout=60)
        elapsed = time.monotonic() - start
    _one_line(out, address)
    assert elapsed < 30, f"{elapsed:.0f} s"


def test_auto_address_with_the_local_executor(tmp_path, cli):
    out = cli("run", "--model", "mlp", "--loss", "ce", "--epochs", "1", "--executor", "local", "--address", "auto",
              "--json", "--out", tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert len(json.loads(out.stdout)) == 1


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--address", "127.0.0.1:6379"], "--executor ray"),
        (["--executor", "local", "--address", "127.0.0.1:6379"], "--executor ray"),
        (["--executor", "ray", "--address", "no-port"], "HOST:PORT"),
        (["--tensorboard"], "--out"),
    ],
)
def test_bad_ray_and_tensorboard_options(args, fragment, cli):
    _one_line(cli("run", "--epochs", "1", *args), fragment)


@pytest.mark.parametrize(
    "module, args, hint",
    [
        ("ray", ["--executor", "ray"], 'pip install "jal-plugins[ray]"'),
        ("tensorboard", ["--tensorboard", "--out", "OUT"], 'pip install "jal-plugins[tensorboard]"'),
    ],
)
def test_a_missing_extra_says_how_to_install_it(module, args, hint, tmp_path, env):
    # sys.modules[name] = None is how Python marks a module as not importable
    code = f"import sys; sys.modules[{module!r}] = None; from jal_plugins.cli import main; sys.exit(main())"
    args = [str(tmp_path) if a == "OUT" else a for a in args]
    out = subprocess.run([sys.executable, "-c", code, "run", "--epochs", "1", *args], capture_output=True, text=True,
                         env=env, timeout=120)  # fmt: skip
    _one_line(out, hint)
    assert not (tmp_path / "results.jsonl").exists()


def test_a_tensorboard_name_belongs_to_one_run(tmp_path):
    from jal_plugins import curves
    from jal_plugins.job import Job

    first, other = (Job(loss="jal-ce", config={"lr": lr}).canonical() for lr in (0.01, 0.02))
    folder = curves.log_dir(tmp_path, first)
    assert folder == tmp_path / "digits/none/jal-ce/erm/0" and curves.log_dir(tmp_path, first) == folder
    assert curves.log_dir(tmp_path, other) == tmp_path / f"digits/none/jal-ce/erm/0@{other.key()}"
    name = curves.run_name(Job(noise="label-file,path=/data/idn.npz").canonical())
    assert name.split("/")[1] == "label-file,path=_data_idn.npz"  # a path inside a noise spec is no folder
