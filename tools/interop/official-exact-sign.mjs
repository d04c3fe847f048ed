#!/usr/bin/env node
// Signs an `exact` payment the way the OFFICIAL client does (@x402/evm 2.27 ExactEvmScheme
// client, the scheme @x402/fetch registers): for requirements with
// `extra.assetTransferMethod: "permit2"` it signs a Permit2 witness transfer to the exact
// proxy, otherwise an EIP-3009 authorization. Signs only; sends nothing.
//
// Env:    PRIVATE_KEY  required, 0x-prefixed 32-byte hex key of the payer
// stdin:  one x402 v2 PaymentRequirements object (JSON)
// stdout: the scheme's result, {"x402Version": 2, "payload": {...}} (JSON)
// Exit:   0 when printed; 1 on bad env or input, or when signing throws.

import { ExactEvmScheme } from "@x402/evm/exact/client";
import { privateKeyToAccount } from "viem/accounts";
import { describeError, startScript } from "./script.mjs";

const { fail, privateKey, stdinJson } = startScript("official-exact-sign");
const account = privateKeyToAccount(privateKey("PRIVATE_KEY"));

const requirements = await stdinJson("one JSON PaymentRequirements");

try {
  const result = await new ExactEvmScheme(account).createPaymentPayload(2, requirements);
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (e) {
  fail(`signing failed: ${describeError(e)}`);
}
