#!/usr/bin/env node
// The OFFICIAL x402 buyer paying on Solana: @x402/fetch wrapFetchWithPayment over an
// @x402/core x402Client with the @x402/svm 2.27 exact client scheme (v2 for solana:*, v1 for
// the v1 network names), signing with a @solana/kit key pair. It reads the mint and the
// blockhash from RPC_URL.
//
// Env:
//   URL             required, the resource to request
//   METHOD          optional, default GET
//   BODY            optional, a JSON request body (sent with content-type application/json)
//   SECRET_KEY      required, the payer's 64-byte secret key in base58 (as Solana tools write it)
//   RPC_URL         required, the Solana JSON-RPC URL (the local chain of tools/solana)
//   SPEND_CONTROLS  optional; "off" disables the SDK's spend controls
//   TIMEOUT_MS      optional, overall request deadline, default 120000
//
// Does one request (paying on a 402 as the SDK does) and prints one JSON line to stdout:
//   {"status": <final HTTP status>, "body": <parsed JSON body, else the text>,
//    "paymentResponse": <decoded PAYMENT-RESPONSE (or X-PAYMENT-RESPONSE) JSON, or null>,
//    "payer": <the payer's address>}
// Exit 0 whenever a final response was received (any status); 1 on bad env or an exception.

import { createKeyPairSignerFromBytes, getBase58Encoder } from "@solana/kit";
import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { ExactSvmScheme } from "@x402/svm/exact/client";
import { ExactSvmSchemeV1 } from "@x402/svm/exact/v1/client";
import { describeError, startScript } from "./script.mjs";

const { fail, requiredUrl } = startScript("svm-fetch-client");

const url = requiredUrl("URL");
const rpcUrl = requiredUrl("RPC_URL");
const secret = process.env.SECRET_KEY;
if (!secret) fail("SECRET_KEY is required (base58, 64 bytes)");
const timeoutMs = Number(process.env.TIMEOUT_MS || "120000");
const method = process.env.METHOD || "GET";
const body = process.env.BODY;
if (body !== undefined) {
  try {
    JSON.parse(body);
  } catch (e) {
    fail(`BODY is not JSON: ${describeError(e)}`);
  }
}
if (!Number.isSafeInteger(timeoutMs) || timeoutMs <= 0) fail(`bad TIMEOUT_MS ${process.env.TIMEOUT_MS}`);

let signer;
try {
  signer = await createKeyPairSignerFromBytes(getBase58Encoder().encode(secret));
} catch (e) {
  fail(`SECRET_KEY is not a base58 64-byte secret key: ${describeError(e)}`);
}
const client = new x402Client();
client.register("solana:*", new ExactSvmScheme(signer, { rpcUrl }));
for (const name of ["solana", "solana-devnet", "solana-testnet"]) {
  client.registerV1(name, new ExactSvmSchemeV1(signer, { rpcUrl }));
}
if (process.env.SPEND_CONTROLS === "off") client.setSpendControls(false);
client.onAfterPaymentCreation(async ({ selectedRequirements: r }) => {
  process.stderr.write(
    `svm-fetch-client: ${signer.address} pays ${r.amount ?? r.maxAmountRequired} of ${r.asset} to ${r.payTo} on ${r.network}\n`,
  );
});

const fetchWithPayment = wrapFetchWithPayment(globalThis.fetch, client);

let output;
try {
  const response = await fetchWithPayment(url, {
    method,
    ...(body === undefined ? {} : { body, headers: { "content-type": "application/json" } }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await response.text();
  let parsed = text;
  try {
    parsed = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  const header = response.headers.get("PAYMENT-RESPONSE") ?? response.headers.get("X-PAYMENT-RESPONSE");
  let paymentResponse = null;
  if (header !== null) {
    try {
      paymentResponse = decodePaymentResponseHeader(header);
    } catch (e) {
      paymentResponse = { decodeError: describeError(e), raw: header };
    }
  }
  if (response.status === 402) {
    process.stderr.write(`svm-fetch-client: final response is 402 (${response.headers.get("PAYMENT-REQUIRED") ?? "no header"})\n`);
  }
  output = { status: response.status, body: parsed, paymentResponse, payer: signer.address };
} catch (e) {
  fail(`${method} ${url} failed: ${describeError(e)}`);
}

process.stdout.write(JSON.stringify(output) + "\n", () => process.exit(0));
