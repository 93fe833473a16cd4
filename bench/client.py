"""Generates the typed Python client in ``clients/python`` from the app's own OpenAPI spec.

``python -m bench.client`` (``make client``) builds the app in-process with ``create_app`` (no
server, no network), writes its spec as ``clients/python/openapi.json`` (sorted keys, fixed
indentation) and runs openapi-python-client, pinned in ``requirements/dev.txt``, to replace
``clients/python/onlinematch_client``. The generator's post hooks are off; the output is
formatted here by the locked ruff with ``--isolated`` (no configuration file is read), so the
same spec gives the same bytes in any directory. ``tests/app/test_client.py`` regenerates into
a temporary directory and compares the trees byte for byte: a stale client fails ``make test``.

The hand-written parts (``README.md``, ``onlinematch_client_ext.py``, the configuration) sit
beside the generated package and are never touched.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CLIENT_DIR = ROOT / "clients" / "python"
CONFIG = CLIENT_DIR / "openapi-python-client.yaml"
PACKAGE = "onlinematch_client"
SPEC = "openapi.json"
# What the staleness check compares: the spec and the generated package, nothing hand-written.
GENERATED = (SPEC, PACKAGE)
RUFF = ["--isolated", "--no-cache", "--line-length", "120", "--target-version", "py311"]


def spec() -> dict[str, Any]:
    """The spec the service itself serves at ``/openapi.json``, built without starting it."""
    from app.main import create_app
    from app.settings import Settings

    # Defaults only (model_construct reads no environment): the spec must not vary by machine.
    schema: dict[str, Any] = create_app(Settings.model_construct()).openapi()
    return schema


def spec_bytes() -> bytes:
    return (json.dumps(spec(), indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def _run(*args: str, cwd: Path) -> None:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


def run_generator(spec_path: Path, out: Path, config: Path = CONFIG) -> None:
    """openapi-python-client on ``spec_path`` into the package directory ``out`` (no post hooks,
    no project metadata, warnings fail); the contract test runs it on the live spec too."""
    _run(
        sys.executable,
        "-m",
        "openapi_python_client",
        "generate",
        "--path",
        str(spec_path),
        "--config",
        str(config),
        "--meta",
        "none",
        "--output-path",
        str(out),
        "--fail-on-warning",
        cwd=out.parent,
    )


def generate(dest: Path) -> None:
    """Writes ``openapi.json`` and the generated package ``onlinematch_client`` into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="onlinematch-client-") as tmp:
        work = Path(tmp)
        (work / SPEC).write_bytes(spec_bytes())
        out = work / PACKAGE
        run_generator(work / SPEC, out)
        _run(sys.executable, "-m", "ruff", "check", *RUFF, "--fix-only", "--extend-select=I", "--quiet", ".", cwd=out)
        _run(sys.executable, "-m", "ruff", "format", *RUFF, "--quiet", ".", cwd=out)
        for name in GENERATED:
            target = dest / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            shutil.move(work / name, target)


def tree(root: Path) -> dict[str, bytes]:
    """Every generated file under ``root`` by relative path, with its bytes (caches left out)."""
    files = {SPEC: (root / SPEC).read_bytes()} if (root / SPEC).is_file() else {}
    for path in sorted((root / PACKAGE).rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--output", type=Path, default=CLIENT_DIR, help="directory to write into (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    generate(args.output)
    print(f"generated {args.output / PACKAGE} from {args.output / SPEC}")


if __name__ == "__main__":
    main()
