"""Property-based run of schemathesis (CLI, 4.x) against the running server's own OpenAPI schema.

`--checks all`: no 5xx, status codes, content types and bodies conform to the schema, and what the
schema calls invalid is rejected (and valid accepted) -- the request schema is exact, see
test_request.py::test_schema_and_validator_agree.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline_code.serving.gateway import KeyStore


def test_schemathesis_finds_no_issue(server, tmp_path):
    key = KeyStore(server.extra["key_file"]).active_key().key
    st = Path(sys.executable).parent / "st"
    result = subprocess.run(
        [str(st), "run", f"{server.url}/openapi.json", "-H", f"x-api-key: {key}", "--checks", "all",
         "--max-examples", "100", "--seed", "20261125", "--no-color"],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,  # its .schemathesis/ cache stays out of the repo
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
    assert "Traceback" not in server.logs()
