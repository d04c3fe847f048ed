// Starting the local Solana chain (litesvm-rpc.mjs) from Node, as its tests and the interop
// scripts do: spawn it on port 0, read its one ready line, and talk JSON-RPC to it.
//
// It lives outside test/ so that `node --test solana/test/` does not run it as a test file.

import { spawn } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/// The front's script.
export const FRONT = join(dirname(fileURLToPath(import.meta.url)), "litesvm-rpc.mjs");

/// Starts the front with the extra command-line `args`, and resolves once it printed its ready
/// line: `{ state (the ready line parsed), rpc(method, params) (the result, or throws an Error
/// with the JSON-RPC `code` and `data`), call(body) (the raw parsed reply to any body),
/// child, stop() }`. `env` is added to the environment.
export function startFront(args = [], { env = {}, stdin = "ignore" } = {}) {
  const child = spawn(process.execPath, [FRONT, "--port", "0", ...args], {
    stdio: [stdin, "pipe", "pipe"],
    env: { ...process.env, ...env },
  });
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += chunk));
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the front did not start in 15 s; stderr:\n${stderr}`));
    }, 15_000);
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`the front exited (${code ?? signal}) before it was ready; stderr:\n${stderr}`));
    });
    child.stdout.on("data", (chunk) => {
      out += chunk;
      const end = out.indexOf("\n");
      if (end < 0) return;
      clearTimeout(timer);
      const state = JSON.parse(out.slice(0, end));
      resolve({
        state,
        child,
        stderr: () => stderr,
        call: (body) => post(state.rpcUrl, body),
        rpc: (method, params = []) => rpc(state.rpcUrl, method, params),
        stop: () => stop(child),
      });
    });
  });
}

/// POSTs `body` (an object, or a string sent as is) to `url` and parses the JSON reply.
export async function post(url, body) {
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await res.text();
  return text ? JSON.parse(text) : undefined;
}

/// Calls `method` with `params` at `url`: its result, or an Error carrying the JSON-RPC error's
/// `code` and `data`.
export async function rpc(url, method, params = []) {
  const reply = await post(url, { jsonrpc: "2.0", id: 1, method, params });
  if (reply.error) {
    const e = new Error(`${method}: ${reply.error.message}`);
    e.code = reply.error.code;
    e.data = reply.error.data;
    throw e;
  }
  return reply.result;
}

/// Stops `child` with SIGTERM and resolves with its exit code once it is gone.
export function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => {
    child.removeAllListeners("exit");
    child.on("exit", (code) => resolve(code));
    child.kill("SIGTERM");
  });
}
