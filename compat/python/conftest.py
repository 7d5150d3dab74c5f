"""Fixtures of the Python client compatibility suite.

The suite runs the real consortium binary in front of the project's fake
provider (upstream/upstreamtest/fakeprovider), both on free loopback ports,
and drives the proxy with the real client packages pinned in
requirements.txt. Tests script the fake (replies per model) and read what
it received through its control API, so they can check what every member
and the arbiter of a consortium were sent.

The binaries are built into a temporary directory, unless CONSORTIUM_BIN and
FAKEPROVIDER_BIN name binaries already built.
"""

import json
import os
import select
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# The client key the proxy accepts, and the tenant it names.
CLIENT_KEY = "compat-key"

# The proxy's configuration: a passthrough provider "fake" (the fake
# provider), and a consortium "council" of three member instances over it
# and a fake arbiter. One round, so that a scripted arbiter reply decides
# each turn. "claude" is an anthropic provider in front of the same fake,
# which answers its POST /v1/messages in Anthropic's wire format: a Claude
# passthrough model ("claude/" + CLAUDE_MODEL). It lists no models, so
# /v1/models is unchanged.
CONFIG = """
auth:
  keys:
    - name: compat
      key: {key}
    - name: limited
      key: limited-key
      rpm: 1
providers:
  fake:
    base_url: {fake_url}
    api_key: fake-provider-key
    timeout: 20s
    idle_timeout: 20s
    max_retries: 0
    models: [m1, m2, emb]
  claude:
    type: anthropic
    base_url: {fake_url}
    api_key: claude-provider-key
    timeout: 20s
    idle_timeout: 20s
    max_retries: 0
consortia:
  council:
    description: two fake members (one of them twice) and a fake arbiter
    members:
      - model: fake/m1
      - model: fake/m2
        count: 2
    arbiter:
      model: fake/arbiter
    max_iterations: 1
  best:
    description: rank; three answers, two judges that rank them by their text
    strategy: rank
    members:
      - model: fake/m1
        count: 2
      - model: fake/m2
    judges:
      - model: fake/judge1
      - model: fake/judge2
        weight: 2
    # The judges are left unscripted, so the fake echoes their prompt back
    # ("echo: " and the prompt). This prompt is a judge's reply, critique
    # and ranking, computed from the answers' texts under the labels this
    # judge saw: the ranking is right whatever order each judge's answers
    # were shuffled into. It knows RANK_ANSWERS, best first.
    judge_prompt: >-
      <critique>{{{{range .Responses}}}}{{{{.Label}}}}: {{{{.Text}}}} {{{{end}}}}</critique>
      <ranking>{{{{range .Responses}}}}{{{{if eq .Text "{best}"}}}}{{{{.Label}}}}{{{{end}}}}{{{{end}}}}
      > {{{{range .Responses}}}}{{{{if eq .Text "{second}"}}}}{{{{.Label}}}}{{{{end}}}}{{{{end}}}}
      > {{{{range .Responses}}}}{{{{if eq .Text "{third}"}}}}{{{{.Label}}}}{{{{end}}}}{{{{end}}}}</ranking>
  quick:
    description: the cheap tier of "tiered", one member and an arbiter scripted to be unsure
    members:
      - model: fake/m1
    arbiter:
      model: fake/quick-arbiter
    max_iterations: 1
  tiered:
    description: cascade; "quick" first, "council" when quick is unsure
    strategy: cascade
    tiers: [quick, council]
    escalate_below: 0.8
"""

# Every member instance of "council": the fake's model names, with counts.
COUNCIL_MEMBERS = {"m1": 1, "m2": 2}

# The answers "best"'s judges know, best first. Its members are fake/m1
# (twice) and fake/m2: scripting m1 with the first and third (in either
# order) and m2 with the second ranks them m1, m2, m1.
RANK_ANSWERS = ("Canberra is the capital of Australia.", "Canberra.", "Sydney.")

# The Claude model the anthropic provider "claude" is called with.
CLAUDE_MODEL = "claude-haiku-4-5"

# The model of the arbiter of "quick", the first tier of "tiered".
QUICK_ARBITER = "quick-arbiter"


def arbiter_reply(synthesis, confidence="0.95"):
    """A deterministic arbiter reply in the tags DESIGN.md defines."""
    return (
        "<analysis>The responses agree.</analysis>"
        f"<confidence>{confidence}</confidence>"
        "<needs_iteration>false</needs_iteration>"
        "<ranking>A, B, C</ranking>"
        f"<synthesis>{synthesis}</synthesis>"
    )


class Process:
    """A child process whose first stdout line is its URL; stderr goes to a
    log file that failures can show."""

    def __init__(self, args, log_path, env=None, cwd=None, url_prefix=""):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
        )
        line = self._first_line(timeout=30)
        if not line.startswith(url_prefix):
            self.stop()
            raise RuntimeError(f"{args[0]} printed {line!r}; log:\n{self.logs()}")
        self.url = line[len(url_prefix):].strip()

    def _first_line(self, timeout):
        deadline = time.monotonic() + timeout
        buf = b""
        fd = self.proc.stdout.fileno()
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                raise RuntimeError(f"{self.proc.args[0]} did not start; log:\n{self.logs()}")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 4096)
                if not chunk and self.proc.poll() is not None:
                    continue
                buf += chunk
        return buf.split(b"\n", 1)[0].decode()

    def logs(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-8000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class Fake:
    """The fake provider's control API."""

    def __init__(self, url):
        self.url = url  # the provider's base URL, with /v1
        self.control = url.removesuffix("/v1") + "/_control/"

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.control + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)

    def reset(self):
        self._call("POST", "reset", {})

    def script(self, model, *replies):
        """Queue replies (dicts of the control API's reply fields) for a
        model of the fake; the last one repeats."""
        self._call("POST", "script", {"model": model, "replies": list(replies)})

    def script_arbiter(self, *syntheses):
        """Make the consortium's arbiter answer with these syntheses, one per
        turn, the last repeating."""
        self.script("arbiter", *[{"content": arbiter_reply(s)} for s in syntheses])

    def requests(self, model=None):
        path = "requests"
        if model is not None:
            path += "?" + urllib.parse.urlencode({"model": model})
        return self._call("GET", path)

    def member_requests(self):
        """The chat requests every member instance of "council" received, in
        arrival order."""
        return [r for r in self.requests() if r["model"] in COUNCIL_MEMBERS]


@pytest.fixture(scope="session")
def binaries(tmp_path_factory):
    """Paths of the consortium and fakeprovider binaries."""
    bins = {
        "consortium": os.environ.get("CONSORTIUM_BIN"),
        "fakeprovider": os.environ.get("FAKEPROVIDER_BIN"),
    }
    if all(bins.values()):
        return bins
    out = tmp_path_factory.mktemp("bin")
    for name, pkg in (("consortium", "./cmd/consortium"), ("fakeprovider", "./upstream/upstreamtest/fakeprovider")):
        bins[name] = str(out / name)
        subprocess.run(["go", "build", "-o", bins[name], pkg], cwd=REPO, check=True)
    return bins


def clean_env(**extra):
    """The environment without anything that would give the proxy a real
    provider or another configuration."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY",
                        "GEMINI_API_KEY", "OLLAMA_HOST", "CONSORTIUM_CONFIG",
                        "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID")}
    env.update(extra)
    return env


class Stack:
    """The fake provider and the proxy in front of it."""

    def __init__(self, binaries, workdir):
        self.fake_proc = Process([binaries["fakeprovider"], "--listen", "127.0.0.1:0", "--models", "m1,m2,emb"],
                                 os.path.join(workdir, "fakeprovider.log"))
        self.fake = Fake(self.fake_proc.url)
        config = os.path.join(workdir, "consortium.yaml")
        with open(config, "w") as f:
            best, second, third = RANK_ANSWERS
            f.write(CONFIG.format(key=CLIENT_KEY, fake_url=self.fake.url, best=best, second=second, third=third))
        try:
            self.proxy_proc = Process([binaries["consortium"], "serve", "-c", config, "--listen", "127.0.0.1:0"],
                                      os.path.join(workdir, "consortium.log"), env=clean_env(), cwd=workdir,
                                      url_prefix="consortium listening on ")
        except Exception:
            self.fake_proc.stop()
            raise
        self.base_url = self.proxy_proc.url  # http://127.0.0.1:PORT/v1
        self.key = CLIENT_KEY

    def run(self, run_id):
        """The run record of GET /v1/consortium/runs/{run_id}."""
        req = urllib.request.Request(f"{self.base_url}/consortium/runs/{run_id}",
                                     headers={"Authorization": f"Bearer {self.key}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.load(resp)

    def stop(self):
        self.proxy_proc.stop()
        self.fake_proc.stop()


@pytest.fixture(scope="session")
def stack(binaries, tmp_path_factory):
    s = Stack(binaries, str(tmp_path_factory.mktemp("stack")))
    yield s
    s.stop()


@pytest.fixture
def fake(stack):
    """The fake provider, reset before each test."""
    stack.fake.reset()
    return stack.fake


@pytest.fixture(scope="session")
def demo(binaries, tmp_path_factory):
    """`consortium serve --demo` with no configuration and no provider
    variables, as the README's quickstart runs it, on a free port."""
    workdir = str(tmp_path_factory.mktemp("demo"))
    proc = Process([binaries["consortium"], "serve", "--demo", "--listen", "127.0.0.1:0"],
                   os.path.join(workdir, "consortium.log"), env=clean_env(), cwd=workdir,
                   url_prefix="consortium listening on ")
    yield proc
    proc.stop()


def pytest_report_header(config):
    import importlib.metadata as md
    names = ["openai", "openai-agents", "anthropic", "langchain-openai", "langchain-core", "llm"]
    return "clients: " + ", ".join(f"{n} {md.version(n)}" for n in names)


@pytest.fixture(scope="session")
def llm_bin():
    """The llm command of the environment running the tests (the venv's)."""
    path = os.path.join(os.path.dirname(sys.executable), "llm")
    if not os.path.exists(path):
        path = shutil.which("llm")
    assert path, "the llm command is not installed in this environment"
    return path
