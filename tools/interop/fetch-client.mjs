#!/usr/bin/env node
// The OFFICIAL x402 v2 buyer: @x402/fetch wrapFetchWithPayment over an @x402/core x402Client
// with the @x402/evm exact and upto client schemes (registered for eip155:*), signing with a
// viem private-key account. Needs no RPC (an upto payer must have approved Permit2 already).
//
// Env:
//   URL             required, the resource to request
//   METHOD          optional, default GET
//   BODY            optional, a JSON request body (sent with content-type application/json)
//   PRIVATE_KEY     required, 0x-prefixed 32-byte hex key of the payer
//   SCHEMES         optional, the schemes to register: "exact,upto" by default, "upto" for an
//                   upto-only buyer
//   RPC_URL         optional; lets the schemes read the chain, so that a Permit2 payment by a
//                   payer without an allowance carries an EIP-2612 approval when the server
//                   declares eip2612GasSponsoring
//   SPEND_CONTROLS  optional; "off" disables the SDK's spend controls (by default it only pays
//                   SDK-known assets such as Base USDC, at most $1 per payment)
//   TIMEOUT_MS      optional, overall request deadline, default 120000
//   SVM_PRIVATE_KEY optional; a base58 64-byte Solana secret key: registers the @x402/svm
//                   exact client scheme for solana:* (PRIVATE_KEY may then be left out)
//   SVM_RPC_URL     optional, with SVM_PRIVATE_KEY: the Solana node the scheme reads the mint
//                   and the latest blockhash from
//
// Does one request (paying on a 402 as the SDK does: one retry with PAYMENT-SIGNATURE) and prints
// one JSON line to stdout:
//   {"status": <final HTTP status>, "body": <parsed JSON body, else the text>,
//    "paymentResponse": <decoded PAYMENT-RESPONSE (or X-PAYMENT-RESPONSE) JSON, or null>}
// If the receipt header is present but undecodable, paymentResponse is
//   {"decodeError": "<message>", "raw": "<header value>"}.
// Exit 0 whenever a final response was received (any status); 1 on bad env or an exception
// (unreachable server, unparsable 402, payment creation refused, timeout, ...).

import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { decodePaymentRequiredHeader } from "@x402/core/http";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { UptoEvmScheme } from "@x402/evm/upto/client";
import { ExactSvmScheme } from "@x402/svm/exact/client";
import { createKeyPairSignerFromBytes, getBase58Encoder } from "@solana/kit";
import { privateKeyToAccount } from "viem/accounts";
import { describeError, startScript } from "./script.mjs";

// Library code may console.log; stdout carries only the result line.
const { fail, requiredUrl, privateKey } = startScript("fetch-client");

const url = requiredUrl("URL");
const svmKey = process.env.SVM_PRIVATE_KEY;
const key = svmKey && !process.env.PRIVATE_KEY ? undefined : privateKey("PRIVATE_KEY");
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

const account = key ? privateKeyToAccount(key) : undefined;
const schemes = (process.env.SCHEMES || "exact,upto").split(",");
const unknownScheme = schemes.find((s) => !["exact", "upto"].includes(s));
if (unknownScheme !== undefined) fail(`SCHEMES names an unknown scheme: ${unknownScheme}`);
const client = new x402Client();
const options = process.env.RPC_URL ? { rpcUrl: process.env.RPC_URL } : undefined;
if (account && schemes.includes("exact")) client.register("eip155:*", new ExactEvmScheme(account, options));
if (account && schemes.includes("upto")) client.register("eip155:*", new UptoEvmScheme(account, options));
let payerName = account?.address;
if (svmKey) {
  let signer;
  try {
    signer = await createKeyPairSignerFromBytes(getBase58Encoder().encode(svmKey));
  } catch (e) {
    fail(`SVM_PRIVATE_KEY is not a base58 64-byte secret key: ${describeError(e)}`);
  }
  const svmRpc = process.env.SVM_RPC_URL;
  client.register("solana:*", new ExactSvmScheme(signer, svmRpc ? { rpcUrl: svmRpc } : undefined));
  payerName = payerName ? `${payerName}/${signer.address}` : signer.address;
}
if (process.env.SPEND_CONTROLS === "off") client.setSpendControls(false);
client.onAfterPaymentCreation(async ({ selectedRequirements: r }) => {
  process.stderr.write(
    `fetch-client: ${payerName} pays ${r.amount} of ${r.asset} to ${r.payTo} on ${r.network} (${r.scheme})\n`,
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
    // Diagnostics only: a 402 after paying carries the facilitator's invalidReason in `error`.
    const required = response.headers.get("PAYMENT-REQUIRED");
    let reason = "no PAYMENT-REQUIRED header";
    if (required !== null) {
      try {
        reason = `error=${JSON.stringify(decodePaymentRequiredHeader(required).error ?? null)}`;
      } catch (e) {
        reason = `undecodable PAYMENT-REQUIRED header: ${describeError(e)}`;
      }
    }
    process.stderr.write(`fetch-client: final response is 402 (${reason})\n`);
  }
  output = { status: response.status, body: parsed, paymentResponse };
} catch (e) {
  fail(`${method} ${url} failed: ${describeError(e)}`);
}

process.stdout.write(JSON.stringify(output) + "\n", () => process.exit(0));
