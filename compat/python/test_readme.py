"""The curl examples of README.md and docs/consortiums.md, run as written
against `consortium serve --demo`, so the documentation cannot rot.

Every ```sh block of those files that calls curl is run with bash, unless
the line before its fence is an HTML comment starting with "<!-- not run".
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


DOCS = ["README.md", "docs/consortiums.md"]


def doc_blocks(doc):
    """The curl blocks of doc that are meant to run: (line, text)."""
    with open(os.path.join(REPO, doc)) as f:
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


BLOCKS = doc_blocks("README.md")
# Every block that runs, with the file it is in.
ALL_BLOCKS = [(doc, line, block) for doc in DOCS for line, block in doc_blocks(doc)]

# What each --demo consortium's strategy adds to the consortium object: a
# block that asks one must print it.
STRATEGY_FIELDS = {
    "demo": ['"strategy":"synthesize"', '"iterations":2'],
    "demo-rank": ['"strategy":"rank"', '"scores":[{'],
    "demo-vote": ['"strategy":"vote"', '"votes":[{', '"agreement":'],
    "demo-cascade": ['"strategy":"cascade"', '"tiers":[{'],
}


def test_readme_covers_every_endpoint():
    """The blocks that run show every route of the HTTP surface."""
    everything = "\n".join(b for _, b in BLOCKS)
    for needle in ['"stream": true', '"include_usage": true', "/v1/chat/completions", "/v1/models\n",
                   "/v1/models/demo/", "/v1/embeddings", "/v1/consortium/runs/", "X-Consortium-Conversation:",
                   "/healthz", "/readyz", "/metrics", "/v1/responses", "previous_response_id", "/v1/messages",
                   "/v1/consortium/estimate", "/v1/consortium/leaderboard"]:
        assert needle in everything, f"no README curl example that runs shows {needle!r}"


def test_consortiums_md_runs_every_strategy():
    """docs/consortiums.md has a block that runs for each --demo consortium."""
    asked = {m for doc, _, b in ALL_BLOCKS if doc != "README.md" for m in re.findall(r'"model": "([\w-]+)"', b)}
    assert set(STRATEGY_FIELDS) <= asked, f"docs/consortiums.md runs no curl for {set(STRATEGY_FIELDS) - asked}"


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


@pytest.mark.parametrize("doc,line,block", ALL_BLOCKS, ids=[f"{doc}:{line}" for doc, line, _ in ALL_BLOCKS])
def test_readme_block(shim, tmp_path, doc, line, block):
    where = f"{doc}:{line}"
    env = clean_env(PATH=shim + os.pathsep + os.environ["PATH"])
    out = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"{where} failed ({out.returncode}):\n{block}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
    assert out.stdout.strip(), f"{where} printed nothing"
    # A stream that failed midway still ends 200: look for error events.
    # (The Responses API's objects carry "error": null when all is well.)
    failed = re.search(r'"error"\s*:\s*\{|^event: (error|response\.failed)$', out.stdout, re.M)
    assert not failed, f"{where} answered an error:\n{out.stdout}"
    if '"stream": true' in block:
        # Each API ends its stream its own way.
        if "/v1/messages" in block:
            assert "event: message_stop" in out.stdout
        elif "/v1/responses" in block:
            assert "event: response.completed" in out.stdout
        else:
            assert "data: [DONE]" in out.stdout
    # In the strategy sections, a demo consortium's answer (compact JSON,
    # as the proxy writes it) shows what its strategy found.
    if doc != "README.md":
        for model in set(re.findall(r'"model": "([\w-]+)"', block)) & set(STRATEGY_FIELDS):
            for field in STRATEGY_FIELDS[model]:
                assert field in out.stdout, f"{where}: the {model} answer lacks {field}:\n{out.stdout}"


# The README's "Build a dataset" walkthrough: every ```sh block of README.md
# that runs `consortium dataset` or `consortium eval` (and is not marked
# "<!-- not run") runs with bash, in order, in one directory holding a copy
# of examples/ (so a block may read what an earlier one wrote), with the
# built binary first on PATH as `consortium` and no provider variables.
BATCH = re.compile(r"^\s*consortium\s+(dataset|eval)\s", re.M)


def batch_blocks(doc):
    """The batch command blocks of doc that are meant to run: (line, text)."""
    with open(os.path.join(REPO, doc)) as f:
        text = f.read()
    blocks = []
    for m in FENCE.finditer(text):
        before = text[:m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        if BATCH.search(m.group(1)) and not before.startswith("<!-- not run"):
            blocks.append((text.count("\n", 0, m.start()) + 1, m.group(1)))
    return blocks


def test_readme_batch_walkthrough(binaries, tmp_path):
    blocks = batch_blocks("README.md")
    commands = "\n".join(b for _, b in blocks)
    for needle in ("consortium dataset select", "consortium dataset generate", "consortium eval"):
        assert needle in commands, f"the README's walkthrough does not run {needle!r}"
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(binaries["consortium"], bindir / "consortium")
    work = tmp_path / "work"
    shutil.copytree(os.path.join(REPO, "examples"), work / "examples")
    env = clean_env(PATH=str(bindir) + os.pathsep + os.environ["PATH"])
    for line, block in blocks:
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=work, env=env,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"README.md:{line} failed ({out.returncode}):\n{block}\nstdout:\n{out.stdout}\nstderr:\n{out.stderr}"
        assert out.stdout.strip(), f"README.md:{line} printed nothing"

