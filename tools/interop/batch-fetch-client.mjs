#!/usr/bin/env node
// The OFFICIAL x402 v2 batch-settlement buyer: @x402/fetch wrapFetchWithPayment over an
// @x402/core x402Client with the @x402/evm 2.27 batch-settlement client scheme (its in-memory
// channel storage), signing with a viem private-key account. One process pays several requests
// on one channel (deposit first, then vouchers), then asks for a cooperative refund.
//
// Env:
//   URL          required, the resource to request
//   PRIVATE_KEY  required, 0x-prefixed 32-byte hex key of the payer
//   COUNT        optional, how many paid requests, default 3
//   METHOD       optional, default GET
//   BODY         optional, a JSON request body (sent with content-type application/json)
//   REFUND       optional, "1" to ask for a refund of what is left afterwards
//   TIMEOUT_MS   optional, each request's deadline, default 120000
//
// Prints one JSON line to stdout:
//   {"requests": [{"status", "body", "paymentResponse"}, ...], "refund": <settle response> | null}
// Exit 0 whenever every request got a final response; 1 on bad env or an exception.

import { decodePaymentResponseHeader, wrapFetchWithPayment, x402Client } from "@x402/fetch";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/client";
import { privateKeyToAccount } from "viem/accounts";
import { describeError, startScript } from "./script.mjs";

const { fail, requiredUrl, privateKey } = startScript("batch-fetch-client");

const url = requiredUrl("URL");
const key = privateKey("PRIVATE_KEY");
const count = Number(process.env.COUNT || "3");
const timeoutMs = Number(process.env.TIMEOUT_MS || "120000");
if (!Number.isSafeInteger(count) || count < 0) fail(`bad COUNT ${process.env.COUNT}`);
const method = process.env.METHOD || "GET";
const body = process.env.BODY;
if (body !== undefined) {
  try {
    JSON.parse(body);
  } catch (e) {
    fail(`BODY is not JSON: ${describeError(e)}`);
  }
}

const account = privateKeyToAccount(key);
const scheme = new BatchSettlementEvmScheme(account);
const client = new x402Client();
client.register("eip155:*", scheme);
client.setSpendControls(false);
const fetchWithPayment = wrapFetchWithPayment(globalThis.fetch, client);

const output = { requests: [], refund: null };
try {
  for (let i = 0; i < count; i++) {
    const init = { method, signal: AbortSignal.timeout(timeoutMs) };
    if (body !== undefined) {
      init.body = body;
      init.headers = { "content-type": "application/json" };
    }
    const response = await fetchWithPayment(url, init);
    const text = await response.text();
    let answer = text;
    try {
      answer = JSON.parse(text);
    } catch {
      // not JSON: keep the text
    }
    const header = response.headers.get("PAYMENT-RESPONSE");
    const paymentResponse = header === null ? null : decodePaymentResponseHeader(header);
    output.requests.push({ status: response.status, body: answer, paymentResponse });
  }
  if (process.env.REFUND === "1") {
    output.refund = await scheme.refund(url);
  }
} catch (e) {
  fail(`${url} failed: ${describeError(e)}`);
}

process.stdout.write(JSON.stringify(output) + "\n", () => process.exit(0));
