"""Generate the Python protocol modules from ``proto/*.proto``.

Usage: ``python scripts/gen_protos.py [--out DIR]`` (default: ``src/supervit/_proto``).

The .proto files import each other by bare file name (``import "common.proto";``) so their
descriptors carry exactly the contract's file names; protoc therefore emits absolute imports
(``import common_pb2``), which this script rewrites to package-relative ones.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"
DEFAULT_OUT = ROOT / "src" / "supervit" / "_proto"
HEADER = '"""Generated from proto/*.proto by scripts/gen_protos.py. Do not edit."""\n'
_ABSOLUTE_IMPORT = re.compile(r"^import (\w+_pb2(?:_grpc)?)( as \w+)?$", re.MULTILINE)


def generate(out_dir: Path) -> list[Path]:
    """Run protoc into ``out_dir`` and return the files written."""
    from grpc_tools import protoc  # dev-only dependency

    # protoc finds the mypy plugins on PATH; they live beside the running interpreter.
    bin_dir = str(Path(sys.executable).parent)
    os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    protos = sorted(PROTO_DIR.glob("*.proto"))
    include = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as raw:
        args = [
            "protoc",
            f"-I{PROTO_DIR}",
            f"-I{include}",
            f"--python_out={raw}",
            f"--grpc_python_out={raw}",
            f"--mypy_out={raw}",
            f"--mypy_grpc_out={raw}",
            *[str(p) for p in protos],
        ]
        if protoc.main(args) != 0:
            raise SystemExit("protoc failed")
        out_dir.mkdir(parents=True, exist_ok=True)
        written = []
        local = {p.stem + "_pb2" for p in protos} | {p.stem + "_pb2_grpc" for p in protos}
        for src in sorted(Path(raw).iterdir()):
            text = src.read_text()

            def relative(m: re.Match[str]) -> str:
                name, alias = m.group(1), m.group(2) or ""
                return f"from . import {name}{alias}" if name in local else m.group(0)

            text = _ABSOLUTE_IMPORT.sub(relative, text)
            dest = out_dir / src.name
            dest.write_text(text)
            written.append(dest)
        init = out_dir / "__init__.py"
        init.write_text(HEADER)
        written.append(init)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ns = parser.parse_args(argv)
    for path in generate(ns.out):
        print(path.relative_to(ns.out.parent) if path.is_relative_to(ns.out.parent) else path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
