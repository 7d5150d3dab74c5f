"""README.md's curl examples, run as written against `consortium serve
--demo`, so the documentation cannot rot.

Every ```sh block of README.md that calls curl is run with bash, unless the
line before its fence is an HTML comment starting with "<!-- not run".
The blocks run unchanged; the curl they find first on PATH is a shim that
points the README's address (127.0.0.1:8080) at the test proxy's free port
and adds --fail-with-body, so that an HTTP error fails the block.
"""

import os
import re
import shutil
import stat
import subprocess

import pytest

from conftest import REPO, clean_env

README_ADDR = "http://127.0.0.1:8080"

FENCE = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)


def readme_blocks():
    """The curl blocks of README.md that are meant to run: (line, text)."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    blocks = []
    for m in FENCE.finditer(text):
        body = m.group(1)
        if not re.search(r"^\s*(\w+=\S*\s+)*curl\s|\$\(curl\s|^\s*curl\s", body, re.M):
            continue
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if before.startswith("<!-- not run"):
            continue
        blocks.append((text.count("\n", 0, m.start()) + 1, body))
    return blocks


BLOCKS = readme_blocks()


def test_readme_covers_every_endpoint():
    """The blocks that run show every route of the HTTP surface."""
    everything = "\n".join(b for _, b in BLOCKS)
    for needle in ['"stream": true', '"include_usage": true', "/v1/chat/completions", "/v1/models\n",
                   "/v1/models/demo/", "/v1/embeddings", "/v1/consortium/runs/", "X-Consortium-Conversation:",
                   "/healthz", "/readyz", "/metrics"]:
        assert needle in everything, f"no README curl example that runs shows {needle!r}"


@pytest.fixture(scope="module")
def shim(demo, tmp_path_factory):
    """A directory whose curl is the shim described above."""
    real = shutil.which("curl")
    assert real, "curl is not installed"
    d = tmp_path_factory.mktemp("shim")
    path = d / "curl"
    path.write_text(f"""#!/usr/bin/env bash
from='{README_ADDR}'
to='{demo.url.removesuffix("/v1")}'
args=()
for a in "$@"; do args+=("${{a//"$from"/"$to"}}"); done
exec '{real}' --fail-with-body --max-time 60 "${{args[@]}}"
""")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(d)


@pytest.mark.parametrize("line,block", BLOCKS, ids=[f"README.md:{line}" for line, _ in BLOCKS])
def test_readme_block(shim, tmp_path, line, block):
    env = clean_env(PATH=shim + os.pathsep + os.environ["PATH"])
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"README.md:{line} failed ({out.returncode}):\n{block}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
    assert out.stdout.strip(), f"README.md:{line} printed nothing"
    # A stream that failed midway still ends 200: look for error events.
    assert '"error"' not in out.stdout, f"README.md:{line} answered an error:\n{out.stdout}"
    if '"stream": true' in block:
        assert "data: [DONE]" in out.stdout
