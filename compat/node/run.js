// Runs the Node.js client compatibility suite: builds the consortium and
// fakeprovider binaries once into a temporary directory (unless
// CONSORTIUM_BIN and FAKEPROVIDER_BIN name built ones), then runs every
// test/*.test.js with node:test. Each test file starts its own fake provider
// and proxy (see test/harness.js).

import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { binaries } from "./test/harness.js";

const here = path.dirname(fileURLToPath(import.meta.url));
const bins = binaries();
const files = fs.readdirSync(path.join(here, "test")).filter((f) => f.endsWith(".test.js")).sort().map((f) => path.join("test", f));
const started = Date.now();
const result = spawnSync(process.execPath, ["--test", "--test-reporter=spec", ...process.argv.slice(2), ...files], {
  cwd: here,
  stdio: "inherit",
  env: { ...process.env, CONSORTIUM_BIN: bins.consortium, FAKEPROVIDER_BIN: bins.fakeprovider },
});
console.log(`node compat suite: ${((Date.now() - started) / 1000).toFixed(1)}s`);
process.exit(result.status ?? 1);
