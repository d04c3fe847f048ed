#!/usr/bin/env node
// An x402 facilitator over HTTP built from the OFFICIAL facilitator library: @x402/core
// x402Facilitator with the @x402/evm exact and upto facilitator schemes (facilitator-library.mjs
// registers them; a new scheme is one line there). It verifies and SETTLES on the chain at
// RPC_URL with its own key, so it is the reference peer for our servers and clients: what the
// library answers is what this sends back, unchanged.
//
// Env:
//   RPC_URL                  required, JSON-RPC endpoint of the chain
//   FACILITATOR_PRIVATE_KEY  required, 0x-prefixed 32-byte hex key: signs and pays gas for the
//                            settlements; upto payments must witness its address (announced in
//                            /supported as the upto kind's extra.facilitatorAddress)
//   NETWORK                  default "eip155:8453" (CAIP-2 network the schemes are registered
//                            for; its chain id is the chain's)
//   EIP6492_ALLOWED_FACTORIES  optional, comma-separated factory addresses the exact scheme
//                            allows for counterfactual (ERC-6492) payers
//   PORT                     default 0 (any free port); listens on 127.0.0.1
//
// Routes (JSON; the bodies of /verify and /settle are {x402Version, paymentPayload,
// paymentRequirements}, as the official HTTPFacilitatorClient sends them):
//   GET  /supported -> 200, the library's getSupported() ({kinds, extensions, signers})
//   POST /verify    -> 200, the library's verify() answer, valid or not
//   POST /settle    -> 200, the library's settle() answer, succeeded or not
//   A body without paymentPayload or paymentRequirements objects -> 400 {"error"}; verify or
//   settle throwing (no scheme registered for the requirements, an RPC failure) -> 500 {"error"}.
// stdout: exactly one line "LISTENING <port>" once the socket is listening.
// stderr: diagnostics, one line per request. Exit 1 on bad env. Runs until killed.

import express from "express";
import { facilitatorFromEnv, paymentRequest, toJson } from "./facilitator-library.mjs";
import { describeError, startScript } from "./script.mjs";

// Library code may console.log; stdout carries only the LISTENING line.
const script = startScript("official-facilitator");
const port = script.port();
const { facilitator, network, address } = await facilitatorFromEnv(script, { sends: true });

function answer(res, status, body) {
  res.status(status).type("application/json").send(toJson(body));
}

/// Serves POST `path` by handing the body's payload and requirements to `run`.
function paymentRoute(app, path, run) {
  app.post(path, async (req, res) => {
    const request = paymentRequest(req.body);
    if (request.error) return answer(res, 400, { error: `the body ${request.error}` });
    try {
      answer(res, 200, await run(request.paymentPayload, request.paymentRequirements));
    } catch (e) {
      process.stderr.write(`official-facilitator: ${path} threw: ${describeError(e)}\n`);
      answer(res, 500, { error: describeError(e) });
    }
  });
}

const app = express();
script.logRequests(app);
app.use(express.json({ limit: "1mb" }));
app.get("/supported", (_req, res) => answer(res, 200, facilitator.getSupported()));
paymentRoute(app, "/verify", (payload, requirements) => facilitator.verify(payload, requirements));
paymentRoute(app, "/settle", (payload, requirements) => facilitator.settle(payload, requirements));
// A body that is not JSON: express.json's error, answered as JSON.
app.use((err, _req, res, _next) => answer(res, err.status ?? 500, { error: err.message }));

process.stderr.write(`official-facilitator: ${address} on ${network}\n`);
script.listen(app, port);
