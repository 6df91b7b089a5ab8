"""``supervit demo --keep``: the processes stay up until Ctrl-C and the printed ctl commands work as pasted."""

from __future__ import annotations

import asyncio
import shlex
import shutil
import signal
import sys
from pathlib import Path

import pytest

from tests.e2e.test_fleet import clean_env

pytestmark = pytest.mark.e2e


def private(path: str) -> bool:
    return Path(path).stat().st_mode & 0o077 == 0


def kept_and_removed(workdir: Path) -> bool:
    """The work dir with its logs was kept after the stop (then cleaned up here)."""
    kept = (workdir / "supervisor.log").exists()
    shutil.rmtree(workdir)
    return kept


async def run_pasted(command: str, env: dict[str, str]) -> tuple[int, str, str]:
    """Run one printed command line the way a shell would (the `supervit` word included)."""
    words = shlex.split(command)
    if words[0] == "supervit":  # on PATH in the demo's environment: this interpreter's
        words = [sys.executable, "-m", "supervit", *words[1:]]
    process = await asyncio.create_subprocess_exec(
        *words, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_demo_keep_runs_until_ctrl_c_with_paste_ready_commands(tmp_path: Path) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    demo = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "supervit", "demo", "--keep", "--duration", "1",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=clean_env(), cwd=tmp_path,
    )  # fmt: skip
    assert demo.stdout is not None
    printed: list[str] = []
    try:
        async with asyncio.timeout(90):
            while not any(line.startswith("configs, databases and logs: ") for line in printed):
                raw = await demo.stdout.readline()
                assert raw, "demo ended early:\n" + "\n".join(printed)
                printed.append(raw.decode().strip())
        env = clean_env()
        commands = [line for line in printed if line.startswith("export ") or " ctl " in line]
        assert any(" ctl nodes " in c for c in commands), printed
        for line in commands:
            if line.startswith("export "):
                name, _, value = line.removeprefix("export ").partition("=")
                env[name] = shlex.split(value)[0]
                assert private(env[name])  # secret files are 0600
                continue
            code, out, err = await run_pasted(line, env)
            assert code == 0, f"{line}\n{err}"
            if " ctl nodes " in line:
                assert "demo-1" in out and "demo-2" in out and "online" in out
        # --duration 1 has long passed (the commands above took seconds; waits only if they did not):
        # --keep keeps everything running.
        await asyncio.sleep(max(0.0, started + 3 - loop.time()))
        assert demo.returncode is None
        workdir = Path(printed[-1].removeprefix("configs, databases and logs: "))
    finally:
        if demo.returncode is None:
            demo.send_signal(signal.SIGINT)
        rest, err = await asyncio.wait_for(demo.communicate(), 30)
    assert demo.returncode == 0, rest.decode() + err.decode()
    assert "everything stopped cleanly" in rest.decode()
    assert kept_and_removed(workdir)
