// The front stops at once on SIGTERM or SIGINT, and, started with --exit-on-stdin-close, when
// its standard input closes, so a parent that dies never leaves it behind; bad options stop it
// before it starts.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { test } from "node:test";
import { FRONT, startFront } from "../front.mjs";

/// Resolves with how `child` ended, or rejects after `ms`.
function exited(child, ms) {
  return new Promise((resolve, reject) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve({ code: child.exitCode, signal: child.signalCode });
    const timer = setTimeout(() => reject(new Error(`still running after ${ms} ms`)), ms);
    child.removeAllListeners("exit");
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
}

test("with --exit-on-stdin-close it exits when its stdin closes", async () => {
  const front = await startFront(["--exit-on-stdin-close", "--payers", "1"], { stdin: "pipe" });
  assert.equal(await front.rpc("getHealth"), "ok");
  front.child.stdin.end();
  assert.deepEqual(await exited(front.child, 3000), { code: 0, signal: null });
  await assert.rejects(front.rpc("getHealth"), "nothing listens any more");
});

test("without it, a closed stdin leaves it running", async () => {
  const front = await startFront(["--payers", "1"], { stdin: "pipe" });
  try {
    front.child.stdin.end();
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await front.rpc("getHealth"), "ok");
  } finally {
    await front.stop();
  }
});

test("SIGTERM and SIGINT stop it at once, open connections or not", async () => {
  for (const signal of ["SIGTERM", "SIGINT"]) {
    const front = await startFront(["--payers", "1"]);
    await front.rpc("getSlot"); // leaves a keep-alive connection open
    const started = performance.now();
    front.child.kill(signal);
    assert.deepEqual(await exited(front.child, 3000), { code: 0, signal: null });
    assert.ok(performance.now() - started < 1000, `${signal} took ${performance.now() - started} ms`);
  }
});

test("bad options are refused with a message and exit code 2", () => {
  for (const args of [["--payers", "many"], ["--port", "70000"], ["--payer-funds", "-1"], ["--bogus"]]) {
    const run = spawnSync(process.execPath, [FRONT, ...args], { encoding: "utf8", timeout: 10_000 });
    assert.equal(run.status, 2, `${args.join(" ")}: ${run.stderr}`);
    assert.match(run.stderr, /^litesvm-rpc: /);
    assert.equal(run.stdout, "");
  }
});
