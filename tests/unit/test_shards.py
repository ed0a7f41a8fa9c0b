"""`make test`'s runner (tests/shards.py) on shards of a few tiny test files: both run at once,
each line says its shard, a failure in either is the exit status, and Ctrl-C in a terminal (SIGINT
to the process group) stops both pytest processes and the runner with 130, leaving nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests import shards
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def _tiny(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"test_{name}.py"
    path.write_text(body)
    return str(path)


def test_every_file_the_compute_shard_names_exists_and_the_other_shard_ignores_it() -> None:
    parts = shards.shards()
    assert parts["compute"] == [*shards.COMPUTE, "-m", "not bench"]
    assert parts["services"][0] == "tests"
    assert parts["services"][1:] == [
        *(f"--ignore={p}" for p in shards.COMPUTE),
        "-m",
        "not bench",
    ]
    for path in shards.COMPUTE:
        assert (REPO / path).exists(), path


def test_both_shards_run_at_once_and_a_failure_in_either_is_the_exit_status(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # each test waits for the other shard's to have started: run one after the other, they fail
    started = tmp_path / "started"
    started.mkdir()
    wait = (
        "import pathlib, time\n"
        "def test_{me}():\n"
        f"    d = pathlib.Path({str(started)!r})\n"
        "    (d / '{me}').touch()\n"
        "    deadline = time.monotonic() + 60\n"
        "    while not (d / '{other}').exists():\n"
        "        assert time.monotonic() < deadline, 'the other shard never started'\n"
        "        time.sleep(0.1)\n"
    )
    a = _tiny(tmp_path, "a", wait.format(me="a", other="b"))
    b = _tiny(tmp_path, "b", wait.format(me="b", other="a"))
    bad = _tiny(tmp_path, "bad", "def test_bad():\n    assert 1 == 2\n")
    args = ["-p", "no:cacheprovider", "-q"]

    assert shards.run(args, {"one": [a], "two": [b]}) == 0
    out = capsys.readouterr().out
    assert "[one] 1 passed" in out and "[two] 1 passed" in out, out
    assert "shards: one exit 0, two exit 0" in out

    assert shards.run(args, {"one": [a, "-k", "no_such_test"], "two": [bad]}) != 0
    out = capsys.readouterr().out
    assert "shards: one exit 5, two exit 1" in out, out  # 5: pytest ran no test


def test_ctrl_c_stops_both_shards_and_the_runner(tmp_path: Path) -> None:
    started = tmp_path / "started"
    started.mkdir()
    sleep = (
        "import pathlib, time\n"
        "def test_{me}():\n"
        f"    (pathlib.Path({str(started)!r}) / '{{me}}').touch()\n"
        "    time.sleep(120)\n"
    )
    parts = {
        name: [_tiny(tmp_path, name, sleep.format(me=name)), "-p", "no:cacheprovider"]
        for name in ("one", "two")
    }
    code = f"import sys; from tests import shards; sys.exit(shards.run([], {parts!r}))"
    # its own session and process group, as a terminal's foreground job
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while len(list(started.iterdir())) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, proc.stdout
            time.sleep(0.1)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out
    assert "[one]" in out and "KeyboardInterrupt" in out, out
    assert not [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
