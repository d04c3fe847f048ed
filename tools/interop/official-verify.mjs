#!/usr/bin/env node
// Runs the OFFICIAL x402 facilitator library (@x402/core x402Facilitator with the @x402/evm
// exact and upto facilitator schemes, or on a solana: NETWORK the @x402/svm exact scheme for v2
// and v1, see facilitator-library.mjs) in-process and verifies
// payments with it. Verify only: the signer handed to the library refuses to send
// transactions, so nothing is ever settled.
//
// Env:
//   RPC_URL                  required, JSON-RPC endpoint of the chain
//   FACILITATOR_PRIVATE_KEY  required, 0x-prefixed 32-byte hex key (the facilitator's signer;
//                            an upto payment must witness its address); on Solana the fee
//                            payer's base58 64-byte secret key
//   NETWORK                  default "eip155:8453" (CAIP-2 network the schemes are registered
//                            for; its chain id is the chain's)
//   EIP6492_ALLOWED_FACTORIES  optional, comma-separated factory addresses the exact scheme
//                            allows for counterfactual (ERC-6492) payers (its eip6492AllowedFactories)
//
// stdin:  a JSON array of {"paymentPayload": ..., "paymentRequirements": ...} (x402 v2 shapes,
//         what a /verify request body carries; other fields such as x402Version are ignored;
//         on Solana v1 shapes too, routed by paymentPayload.x402Version).
// stdout: one JSON array, one entry per input item, in order: the official verify result
//         ({"isValid": bool, "invalidReason"?, "invalidMessage"?, "payer"?, ...}), or
//         {"error": "<message>"} when verify threw or the item was malformed.
// Exit:   0 when the array was printed; 1 on bad env or unreadable stdin.

import { facilitatorFromEnv, paymentRequest, toJson } from "./facilitator-library.mjs";
import { describeError, startScript } from "./script.mjs";

// Library code may console.log; stdout carries only the result array.
const script = startScript("official-verify");
const { facilitator } = await facilitatorFromEnv(script, { sends: false });

const input = await script.stdinJson("valid JSON");
if (!Array.isArray(input)) script.fail("stdin must be a JSON array of {paymentPayload, paymentRequirements}");

const results = [];
for (const [i, item] of input.entries()) {
  const request = paymentRequest(item);
  if (request.error) {
    results.push({ error: `item ${i} ${request.error}` });
    continue;
  }
  try {
    results.push(await facilitator.verify(request.paymentPayload, request.paymentRequirements));
  } catch (e) {
    results.push({ error: describeError(e) });
  }
}

process.stdout.write(toJson(results) + "\n", () => process.exit(0));
