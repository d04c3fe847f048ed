#!/usr/bin/env node
// Runs the OFFICIAL x402 facilitator library (@x402/core x402Facilitator + @x402/evm exact
// facilitator scheme) in-process and verifies payments with it. Verify only: the signer
// handed to the library refuses to send transactions, so nothing is ever settled.
//
// Env:
//   RPC_URL                  required, JSON-RPC endpoint of the chain
//   FACILITATOR_PRIVATE_KEY  required, 0x-prefixed 32-byte hex key (the facilitator's signer)
//   NETWORK                  default "eip155:8453" (CAIP-2 network the scheme is registered for)
//   CHAIN_ID                 default 8453 (chain id of the viem chain used for RPC)
//   EIP6492_ALLOWED_FACTORIES  optional, comma-separated factory addresses the scheme allows
//                            for counterfactual (ERC-6492) payers (its eip6492AllowedFactories)
//
// stdin:  a JSON array of {"paymentPayload": ..., "paymentRequirements": ...} (x402 v2 shapes,
//         what a /verify request body carries; other fields such as x402Version are ignored).
// stdout: one JSON array, one entry per input item, in order: the official verify result
//         ({"isValid": bool, "invalidReason"?, "invalidMessage"?, "payer"?, ...}), or
//         {"error": "<message>"} when verify threw or the item was malformed.
// Exit:   0 when the array was printed; 1 on bad env or unreadable stdin.

import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/facilitator";
import { createWalletClient, defineChain, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { startScript } from "./script.mjs";

// Library code may console.log; stdout carries only the result array.
const { fail, privateKey, network: readNetwork, stdinJson } = startScript("official-verify");

function errorMessage(e) {
  if (e instanceof Error) return e.shortMessage ?? e.message;
  return String(e);
}

const rpcUrl = process.env.RPC_URL;
const key = privateKey("FACILITATOR_PRIVATE_KEY");
const network = readNetwork();
const chainId = Number(process.env.CHAIN_ID || "8453");
if (!rpcUrl) fail("RPC_URL is required");
if (!Number.isSafeInteger(chainId) || chainId <= 0) fail(`CHAIN_ID must be a positive integer, got ${process.env.CHAIN_ID}`);

const input = await stdinJson("valid JSON");
if (!Array.isArray(input)) fail("stdin must be a JSON array of {paymentPayload, paymentRequirements}");

const chain = defineChain({
  id: chainId,
  name: `chain-${chainId}`,
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [rpcUrl] } },
});
const account = privateKeyToAccount(key);
const client = createWalletClient({ account, chain, transport: http(rpcUrl) }).extend(publicActions);
const refuse = async () => {
  throw new Error("official-verify.mjs is verify-only and never sends transactions");
};
const signer = toFacilitatorEvmSigner({
  ...client,
  address: account.address,
  writeContract: refuse,
  sendTransaction: refuse,
});
const eip6492AllowedFactories = (process.env.EIP6492_ALLOWED_FACTORIES || "")
  .split(",")
  .map((a) => a.trim())
  .filter((a) => a.length > 0);
const facilitator = new x402Facilitator().register(
  network,
  new ExactEvmScheme(signer, { eip6492AllowedFactories }),
);

const results = [];
for (const [i, item] of input.entries()) {
  if (item === null || typeof item !== "object" || Array.isArray(item)) {
    results.push({ error: `item ${i} is not an object` });
    continue;
  }
  const { paymentPayload, paymentRequirements } = item;
  if (paymentPayload === null || typeof paymentPayload !== "object") {
    results.push({ error: `item ${i} has no paymentPayload object` });
    continue;
  }
  if (paymentRequirements === null || typeof paymentRequirements !== "object") {
    results.push({ error: `item ${i} has no paymentRequirements object` });
    continue;
  }
  try {
    results.push(await facilitator.verify(paymentPayload, paymentRequirements));
  } catch (e) {
    results.push({ error: errorMessage(e) });
  }
}

process.stdout.write(
  JSON.stringify(results, (_, v) => (typeof v === "bigint" ? v.toString() : v)) + "\n",
  () => process.exit(0),
);
