"""A fresh ``git clone`` works on its own: dev.py's help and the CLI run from the clone, touch
nothing of this checkout's environment, and leave ``git status`` clean (nothing tracked or
untracked-and-unignored appears)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def git(*args: str, cwd: Path) -> str:
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=120)
    return result.stdout


def env_without_ours() -> dict[str, str]:
    """This process's environment minus what points at this checkout (venv, supervit variables,
    dev.py's bytecode cache directory).

    Coverage's subprocess measurement goes too: the clone's copy of supervit is not the code under
    test, and its data would be reported against files that vanish with the temp dir.
    """
    drop = ("SUPERVIT_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "PYTHONHOME")
    drop += ("COV_", "COVERAGE_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout (or git missing): nothing to clone")
    target = tmp_path_factory.mktemp("clone") / "supervit"
    git("clone", "--quiet", str(ROOT), str(target), cwd=ROOT)
    return target


def test_dev_py_help_from_a_clone(clone: Path) -> None:
    """--help answers at once: no virtualenv is created, nothing is installed, nothing is written."""
    before = git("status", "--porcelain", cwd=ROOT)
    result = subprocess.run(
        [sys.executable, "scripts/dev.py", "--help"],
        cwd=clone,
        env=env_without_ours(),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    for command in ("test", "demo", "check"):
        assert command in result.stdout
    assert not (clone / ".venv").exists()
    assert git("status", "--porcelain", "--ignored", cwd=clone) == ""
    assert git("status", "--porcelain", cwd=ROOT) == before


def test_cli_runs_from_the_clone_and_leaves_git_status_clean(clone: Path, tmp_path: Path) -> None:
    """The clone's own sources run (not this checkout's), with bytecode caching on; afterwards the
    clone's ``git status`` shows nothing (caches are ignored, nothing tracked changed)."""
    env = {**env_without_ours(), "PYTHONPATH": str(clone / "src")}
    where = subprocess.run(
        [sys.executable, "-c", "import supervit; print(supervit.__file__)"],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    assert Path(where.stdout.strip()).is_relative_to(clone / "src")
    runs = [
        ["--help"],
        ["gen-credential", "--action", "node_info", "--node-id", "n1", "--shared-secret", "ab" * 32,
         "--timestamp", "1764201600", "--nonce", "fixed", "--output", "json"],
        ["node", "--help"],
        ["ctl", "nodes", "--admin", "127.0.0.1"],  # a usage error: one line, exit 2
    ]  # fmt: skip
    codes = []
    for args in runs:
        result = subprocess.run(
            [sys.executable, "-m", "supervit", *args],
            cwd=clone, env=env, capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert "Traceback" not in result.stderr, result.stderr
        codes.append(result.returncode)
    assert codes == [0, 0, 0, 2]
    assert list((clone / "src" / "supervit").rglob("*.pyc"))  # bytecode was written in the clone ...
    assert git("status", "--porcelain", cwd=clone) == ""  # ... and git does not see it
    assert not (clone / ".venv").exists()
