#!/usr/bin/env node
// The project's local Solana chain: a JSON-RPC 2.0 HTTP server over LiteSVM (chain.mjs) that
// poses as Solana devnet, with the 6-decimal USDC mint at the devnet USDC address, a funded fee
// payer, a payTo and funded payers. Started on port 0 like anvil; when ready it prints ONE line
// of JSON on stdout and nothing else there:
//
//   {"rpcUrl":"http://127.0.0.1:PORT","network":"solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
//    "v1Network":"solana-devnet","genesisHash":"EtWT…rZBG",
//    "mint":"4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU","decimals":6,"tokenProgram":"Tokenkeg…",
//    "mintAuthority":ADDR,"mintAuthorityKey":KEY,"feePayer":ADDR,"feePayerKey":KEY,
//    "payTo":ADDR,"payToKey":KEY,"payToTokenAccount":ADDR,
//    "payers":[ADDR…],"payerKeys":[KEY…],"payerTokenAccounts":[ADDR…],"payerFunds":"1000000000",
//    "pid":PID}
//
// ADDR is a base58 address, KEY a base58 64-byte secret key (seed ‖ public key, as Solana tools
// write it). Each payer's associated token account holds `payerFunds` atomic units and the payer
// has no SOL; the fee payer holds 1000 SOL.
//
// Options:
//   --port N                 port on 127.0.0.1 (default 0: any free port)
//   --host H                 address to listen on (default 127.0.0.1)
//   --payers N               funded payers (default 4, at most 1000)
//   --payer-funds UNITS      atomic USDC units per payer (default 1000000000 = 1000 USDC)
//   --seed TEXT              derive every key from TEXT (same seed, same chain); random otherwise
//   --state-json FILE        also write the ready line's JSON to FILE (mode 0600: it holds keys)
//   --exit-on-stdin-close    exit when standard input closes (so a parent that dies takes the
//                            chain with it)
// SIGTERM and SIGINT stop it at once. RPC_LOG=1 logs each method called to stderr.

import { createServer } from "node:http";
import { writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { RpcError, setUpChain } from "./chain.mjs";

/// Largest request body accepted.
const MAX_BODY_BYTES = 8 * 1024 * 1024;

function fail(message) {
  process.stderr.write(`litesvm-rpc: ${message}\n`);
  process.exit(2);
}

let options;
try {
  ({ values: options } = parseArgs({
    options: {
      port: { type: "string", default: "0" },
      host: { type: "string", default: "127.0.0.1" },
      payers: { type: "string", default: "4" },
      "payer-funds": { type: "string", default: "1000000000" },
      seed: { type: "string" },
      "state-json": { type: "string" },
      "exit-on-stdin-close": { type: "boolean", default: false },
    },
  }));
} catch (e) {
  fail(e.message);
}
const integer = (name, max) => {
  const text = options[name];
  if (!/^\d+$/.test(text) || Number(text) > max) fail(`--${name} must be an integer from 0 to ${max}, not ${JSON.stringify(text)}`);
  return Number(text);
};
const port = integer("port", 65535);
const payers = integer("payers", 1000);
if (!/^\d{1,19}$/.test(options["payer-funds"]) || BigInt(options["payer-funds"]) >= 1n << 64n) fail("--payer-funds must be a u64");

process.on("SIGTERM", () => process.exit(0));
process.on("SIGINT", () => process.exit(0));
if (options["exit-on-stdin-close"]) {
  process.stdin.on("end", () => process.exit(0));
  process.stdin.on("close", () => process.exit(0));
  process.stdin.on("error", () => process.exit(0));
  process.stdin.resume();
}

const { chain, state } = setUpChain({ payers, seed: options.seed, payerFunds: BigInt(options["payer-funds"]) });
const log = process.env.RPC_LOG === "1" ? (line) => process.stderr.write(`${line}\n`) : () => {};

/// JSON with bigints written as plain numbers, as a node writes u64 values.
function stringify(value) {
  return JSON.stringify(value, (_, v) => (typeof v === "bigint" ? `\u0000big:${v}` : v)).replace(/"\\u0000big:(\d+)"/g, "$1");
}

const errorResponse = (id, code, message, data) => ({ jsonrpc: "2.0", error: data === undefined ? { code, message } : { code, message, data }, id });

/// The answer to one request object, or undefined for a notification (no `id`).
function answer(request) {
  if (!request || typeof request !== "object" || Array.isArray(request) || request.jsonrpc !== "2.0" || typeof request.method !== "string")
    return errorResponse(request && typeof request === "object" && "id" in request ? request.id : null, -32600, "Invalid request");
  const id = "id" in request ? request.id : undefined;
  const method = chain.methods[request.method];
  log(request.method);
  let response;
  if (!Object.hasOwn(chain.methods, request.method)) response = errorResponse(id ?? null, -32601, `Method not found: ${request.method}`);
  else if (request.params !== undefined && !Array.isArray(request.params))
    response = errorResponse(id ?? null, -32602, "Invalid params: params must be an array");
  else {
    try {
      response = { jsonrpc: "2.0", result: method(request.params ?? []), id: id ?? null };
    } catch (e) {
      if (e instanceof RpcError) response = errorResponse(id ?? null, e.code, e.message, e.data);
      else {
        process.stderr.write(`litesvm-rpc: ${request.method} failed: ${e.stack ?? e}\n`);
        response = errorResponse(id ?? null, -32603, "Internal error");
      }
    }
  }
  return id === undefined ? undefined : response;
}

const server = createServer((req, res) => {
  const headers = {
    "access-control-allow-origin": "*",
    "access-control-allow-methods": "POST, OPTIONS",
    "access-control-allow-headers": "content-type, solana-client",
  };
  if (req.method === "OPTIONS") {
    res.writeHead(204, headers).end();
    return;
  }
  if (req.method !== "POST") {
    res.writeHead(405, { ...headers, "content-type": "text/plain", allow: "POST" }).end("Used HTTP Method is not allowed. POST or OPTIONS is required\n");
    return;
  }
  const chunks = [];
  let size = 0;
  req.on("data", (chunk) => {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) {
      res.writeHead(413, headers).end();
      req.destroy();
    } else chunks.push(chunk);
  });
  req.on("end", () => {
    if (size > MAX_BODY_BYTES) return;
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      body = undefined;
    }
    let reply;
    if (body === undefined) reply = errorResponse(null, -32700, "Parse error");
    else if (Array.isArray(body)) {
      reply = body.length === 0 ? errorResponse(null, -32600, "Invalid request") : body.map(answer).filter((r) => r !== undefined);
      if (Array.isArray(reply) && reply.length === 0) reply = undefined;
    } else reply = answer(body);
    if (reply === undefined) res.writeHead(200, headers).end();
    else res.writeHead(200, { ...headers, "content-type": "application/json; charset=utf-8" }).end(stringify(reply));
  });
});

server.on("error", (e) => fail(`cannot listen on ${options.host}:${port}: ${e.message}`));
server.listen(port, options.host, () => {
  const { port: bound } = server.address();
  const host = options.host.includes(":") ? `[${options.host}]` : options.host;
  const ready = JSON.stringify({ rpcUrl: `http://${host}:${bound}`, ...state, pid: process.pid });
  if (options["state-json"]) {
    try {
      writeFileSync(options["state-json"], `${ready}\n`, { mode: 0o600 });
    } catch (e) {
      fail(`cannot write ${options["state-json"]}: ${e.message}`);
    }
  }
  process.stdout.write(`${ready}\n`);
});
