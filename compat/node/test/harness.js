// The harness of the Node.js client compatibility suite: it runs the real
// consortium binary in front of the project's fake provider
// (upstream/upstreamtest/fakeprovider), both on free loopback ports, with a
// configuration it writes. Tests script the fake (replies per model) and read
// what it received through its control API.
//
// The binaries come from CONSORTIUM_BIN and FAKEPROVIDER_BIN (run.js builds
// them once for the whole suite), or are built into a temporary directory.

import { execFileSync, spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

// The client key the proxy accepts.
export const CLIENT_KEY = "compat-key";

// Every member instance of "council": the fake's model names, with counts.
export const COUNCIL_MEMBERS = { m1: 1, m2: 2 };

// The answers "best"'s judges know, best first. Its members are fake/m1
// (twice) and fake/m2: scripting m1 with the first and third (in either
// order) and m2 with the second ranks them m1, m2, m1.
export const RANK_ANSWERS = ["Canberra is the capital of Australia.", "Canberra.", "Sydney."];

// The model of the arbiter of "quick", the first tier of "tiered".
export const QUICK_ARBITER = "quick-arbiter";

// rankBy is the judge prompt's ranking: the label of each of RANK_ANSWERS,
// best first, among the answers this judge saw.
const rankBy = RANK_ANSWERS.map((a) => `{{range .Responses}}{{if eq .Text "${a}"}}{{.Label}}{{end}}{{end}}`).join(" > ");

// A passthrough provider "fake" (the fake provider), and a consortium
// "council" of three member instances over it and a fake arbiter. One
// round, so that a scripted arbiter reply decides each turn. Then a rank
// consortium "best" and a cascade "tiered" (over "quick" and "council"), as
// in the Python suite's conftest.py. "claude" is an anthropic provider in
// front of the same fake (its Messages API), a Claude passthrough model
// (claude/claude-haiku-4-5); it lists no models, so /v1/models is unchanged.
const config = (fakeURL) => `
auth:
  keys:
    - name: compat
      key: ${CLIENT_KEY}
    - name: limited
      key: limited-key
      rpm: 1
providers:
  fake:
    base_url: ${fakeURL}
    api_key: fake-provider-key
    timeout: 20s
    idle_timeout: 20s
    max_retries: 0
    models: [m1, m2, emb]
  claude:
    type: anthropic
    base_url: ${fakeURL}
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
    # were shuffled into.
    judge_prompt: '<critique>{{range .Responses}}{{.Label}}: {{.Text}} {{end}}</critique> <ranking>${rankBy}</ranking>'
  quick:
    description: the cheap tier of "tiered", one member and an arbiter scripted to be unsure
    members:
      - model: fake/m1
    arbiter:
      model: fake/${QUICK_ARBITER}
    max_iterations: 1
  tiered:
    description: cascade; "quick" first, "council" when quick is unsure
    strategy: cascade
    tiers: [quick, council]
    escalate_below: 0.8
`;

// arbiterReply is a deterministic arbiter reply in DESIGN.md's tags.
export function arbiterReply(synthesis, confidence = "0.95") {
  return (
    "<analysis>The responses agree.</analysis>" +
    `<confidence>${confidence}</confidence>` +
    "<needs_iteration>false</needs_iteration>" +
    "<ranking>A, B, C</ranking>" +
    `<synthesis>${synthesis}</synthesis>`
  );
}

// binaries returns the paths of the two binaries, building them if needed.
export function binaries() {
  if (process.env.CONSORTIUM_BIN && process.env.FAKEPROVIDER_BIN) {
    return { consortium: process.env.CONSORTIUM_BIN, fakeprovider: process.env.FAKEPROVIDER_BIN };
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "consortium-compat-bin-"));
  const bins = { consortium: path.join(dir, "consortium"), fakeprovider: path.join(dir, "fakeprovider") };
  execFileSync("go", ["build", "-o", bins.consortium, "./cmd/consortium"], { cwd: REPO, stdio: "inherit" });
  execFileSync("go", ["build", "-o", bins.fakeprovider, "./upstream/upstreamtest/fakeprovider"], { cwd: REPO, stdio: "inherit" });
  process.on("exit", () => fs.rmSync(dir, { recursive: true, force: true }));
  return bins;
}

// The environment without anything that would give the proxy a real
// provider or another configuration.
function cleanEnv() {
  const env = { ...process.env };
  for (const k of ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENROUTER_API_KEY", "GEMINI_API_KEY",
    "OLLAMA_HOST", "CONSORTIUM_CONFIG", "OPENAI_BASE_URL"]) {
    delete env[k];
  }
  return env;
}

const children = new Set();
process.on("exit", () => {
  for (const c of children) c.kill("SIGKILL");
});

// startProcess runs a command whose first stdout line, after prefix, is its
// URL; stderr goes to logPath.
async function startProcess(args, logPath, { cwd, prefix = "" } = {}) {
  const log = fs.openSync(logPath, "w");
  const child = spawn(args[0], args.slice(1), { cwd, env: cleanEnv(), stdio: ["ignore", "pipe", log] });
  fs.closeSync(log);
  children.add(child);
  const logs = () => fs.readFileSync(logPath, "utf8").slice(-8000);
  const url = await new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error(`${args[0]} did not start:\n${logs()}`)), 30_000);
    child.stdout.on("data", (d) => {
      buf += d;
      const nl = buf.indexOf("\n");
      if (nl >= 0) {
        clearTimeout(timer);
        const line = buf.slice(0, nl);
        if (!line.startsWith(prefix)) reject(new Error(`${args[0]} printed ${line}`));
        resolve(line.slice(prefix.length).trim());
      }
    });
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${args[0]} exited (${code}):\n${logs()}`));
    });
    child.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
  });
  child.stdout.resume();
  return {
    url,
    logs,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.removeAllListeners("exit");
        child.on("exit", () => {
          children.delete(child);
          resolve();
        });
        child.kill("SIGTERM");
      }),
  };
}

// Fake is the fake provider's control API.
export class Fake {
  constructor(url) {
    this.url = url; // the provider's base URL, with /v1
    this.control = url.replace(/\/v1$/, "") + "/_control/";
  }

  async call(method, route, body) {
    const resp = await fetch(this.control + route, {
      method,
      headers: { "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const data = await resp.json();
    if (!resp.ok) throw new Error(`fake ${route}: ${JSON.stringify(data)}`);
    return data;
  }

  reset() {
    return this.call("POST", "reset", {});
  }

  // script queues replies (objects of the control API's reply fields) for a
  // model of the fake; the last one repeats.
  script(model, ...replies) {
    return this.call("POST", "script", { model, replies });
  }

  // scriptArbiter makes the consortium's arbiter answer with these
  // syntheses, one per turn, the last repeating.
  scriptArbiter(...syntheses) {
    return this.script("arbiter", ...syntheses.map((s) => ({ content: arbiterReply(s) })));
  }

  requests(model) {
    return this.call("GET", model === undefined ? "requests" : `requests?model=${encodeURIComponent(model)}`);
  }

  // memberRequests returns the chat requests every member instance of
  // "council" received, in arrival order.
  async memberRequests() {
    return (await this.requests()).filter((r) => r.model in COUNCIL_MEMBERS);
  }
}

// startStack starts the fake provider and the proxy in front of it. The
// caller must await stop().
export async function startStack() {
  const bins = binaries();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "consortium-compat-"));
  const fakeProc = await startProcess(
    [bins.fakeprovider, "--listen", "127.0.0.1:0", "--models", "m1,m2,emb"],
    path.join(dir, "fakeprovider.log"),
  );
  const fake = new Fake(fakeProc.url);
  const configPath = path.join(dir, "consortium.yaml");
  fs.writeFileSync(configPath, config(fake.url));
  let proxyProc;
  try {
    proxyProc = await startProcess(
      [bins.consortium, "serve", "-c", configPath, "--listen", "127.0.0.1:0"],
      path.join(dir, "consortium.log"),
      { cwd: dir, prefix: "consortium listening on " },
    );
  } catch (err) {
    await fakeProc.stop();
    throw err;
  }
  const baseURL = proxyProc.url; // http://127.0.0.1:PORT/v1
  return {
    baseURL,
    key: CLIENT_KEY,
    fake,
    logs: proxyProc.logs,
    // run returns the record of GET /v1/consortium/runs/{runID}.
    async run(runID) {
      const resp = await fetch(`${baseURL}/consortium/runs/${runID}`, {
        headers: { Authorization: `Bearer ${CLIENT_KEY}` },
      });
      if (!resp.ok) throw new Error(`run ${runID}: ${resp.status} ${await resp.text()}`);
      return resp.json();
    },
    async stop() {
      await proxyProc.stop();
      await fakeProc.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// startDemo runs `consortium serve --demo` with no configuration, as the
// README's quickstart does, on a free port. The caller must await stop().
export async function startDemo() {
  const bins = binaries();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "consortium-demo-"));
  const proc = await startProcess(
    [bins.consortium, "serve", "--demo", "--listen", "127.0.0.1:0"],
    path.join(dir, "consortium.log"),
    { cwd: dir, prefix: "consortium listening on " },
  );
  return {
    baseURL: proc.url,
    logs: proc.logs,
    async stop() {
      await proc.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

// streamAll runs the AI SDK's streamText(options) to its end: the result,
// its text parts, and the errors its onError saw.
export async function streamAll(streamText, options) {
  const errors = [];
  const result = streamText({ maxRetries: 0, ...options, onError: ({ error }) => errors.push(error) });
  const parts = [];
  for await (const part of result.textStream) parts.push(part);
  return { result, parts, errors };
}
