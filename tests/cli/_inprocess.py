"""Run ``supervit`` through the same ``main()`` as ``python -m supervit``, inside the test process.

For commands that compute and print (``gen-credential``, configuration errors) and for ``ctl``
against a real daemon (tests/cli/test_ctl.py): the answer, the exit code and the one-line error
style are ``main()``'s, so running them in process checks the same thing as a subprocess without
paying ~0.5 s of interpreter start-up, imports and coverage start-up per call. Daemons started as
processes, and one test per entry point, stay real subprocesses (tests/e2e, test_ctl.py,
test_gen_credential.py, test_errors.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import os
import subprocess

from supervit.cli import main


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``supervit *args`` with ``env`` as the whole environment (default: this process's)."""
    out, err = io.StringIO(), io.StringIO()
    saved_env = dict(os.environ)
    root = logging.getLogger()
    saved_handlers = list(root.handlers)
    code: int
    try:
        if env is not None:
            os.environ.clear()
            os.environ.update(env)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
                code = 0
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        os.environ.clear()
        os.environ.update(saved_env)
        root.handlers[:] = saved_handlers
    return subprocess.CompletedProcess(["supervit", *args], code, out.getvalue(), err.getvalue())


async def run_cli_in_thread(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``run_cli`` from a test whose event loop serves the daemon the command talks to.

    ``main()`` runs its own ``asyncio.run``, which cannot nest in the test's running loop: it runs
    in a worker thread while the test's loop keeps serving. One command at a time (stdout, stderr
    and the environment are the process's).
    """
    return await asyncio.to_thread(run_cli, *args, env=env)
