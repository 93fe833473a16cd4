"""Schemathesis against the live OpenAPI (``--checks all``) of the service under a real uvicorn
server on embedded defaults: no 5xx, every 4xx a ``problem+json`` body, every status, header
and content type the API returns documented, every response matching its schema.

Deterministic and bounded (``--generation-deterministic``, a fixed example count), so that a
failure reproduces and the run fits in ``make test``. The operator token is sent, so the
admin routes are fuzzed past authentication too; their unauthenticated answers are covered by
``test_openapi_spec.py``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.app.conftest import TOKEN, serving, settings_for

EXAMPLES = int(os.environ.get("OM_FUZZ_EXAMPLES", "100"))  # `make fuzz` runs more
CONFIG = Path(__file__).with_name("schemathesis.toml")


def test_schemathesis_all_checks_pass_against_the_live_openapi(bundle_dir: Path, tmp_path: Path) -> None:
    binary = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    assert binary, "schemathesis is in the dev extra: `make test` installs it"
    with serving(settings_for(bundle_dir)) as url:
        run = subprocess.run(
            [
                binary, "--no-color", "--config-file", str(CONFIG), "run", f"{url}/openapi.json",
                "--checks", "all",
                "--max-examples", str(EXAMPLES),
                "--generation-deterministic",
                "--header", f"Authorization: Bearer {TOKEN}",
                "--request-timeout", "10",
                "--report", "junit", "--report-dir", str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=900,
            cwd=tmp_path,  # its cache directory goes there, not into the work tree
            env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
        )  # fmt: skip
    summary = run.stdout[-6000:]
    assert run.returncode == 0, summary
    assert "No issues found" in run.stdout, summary  # no failure and no warning (e.g. untestable data)
