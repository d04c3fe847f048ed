// The official @x402/svm 2.27 client builds payments against the local chain and the official
// facilitator verifies and settles them there, for x402 v2 and v1: the payer's USDC goes down
// and payTo's up by the amount; refused payments get the SDK's reason codes; a payment settled
// again by a facilitator that does not remember it lands nothing more (the node answers the
// resend with the same signature).

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createKeyPairSignerFromBytes, getBase58Encoder } from "@solana/kit";
import { toFacilitatorSvmSigner } from "@x402/svm";
import { ExactSvmScheme as ExactSvmClient } from "@x402/svm/exact/client";
import { ExactSvmScheme as ExactSvmFacilitator } from "@x402/svm/exact/facilitator";
import { ExactSvmSchemeV1 as ExactSvmClientV1 } from "@x402/svm/exact/v1/client";
import { ExactSvmSchemeV1 as ExactSvmFacilitatorV1 } from "@x402/svm/exact/v1/facilitator";
import { startFront } from "../front.mjs";

let front;
let signerOf;
before(async () => {
  front = await startFront(["--seed", "official-sdk", "--payers", "3"]);
  signerOf = (key) => createKeyPairSignerFromBytes(getBase58Encoder().encode(key));
});
after(() => front?.stop());

/// A new official facilitator (its own duplicate-settlement cache) holding the fee payer's key.
async function facilitator(Scheme = ExactSvmFacilitator) {
  return new Scheme(toFacilitatorSvmSigner(await signerOf(front.state.feePayerKey), { defaultRpcUrl: front.state.rpcUrl }));
}

/// v2 payment requirements for `amount` atomic USDC to payTo.
function requirements(amount) {
  const s = front.state;
  return { scheme: "exact", network: s.network, amount: String(amount), asset: s.mint, payTo: s.payTo, maxTimeoutSeconds: 60, extra: { feePayer: s.feePayer } };
}

/// Payer `i` pays `accepted` with the official v2 client; returns the PaymentPayload.
async function payV2(i, accepted) {
  const client = new ExactSvmClient(await signerOf(front.state.payerKeys[i]), { rpcUrl: front.state.rpcUrl });
  const { x402Version, payload } = await client.createPaymentPayload(2, accepted);
  return { x402Version, resource: { url: "http://127.0.0.1/run", description: "test", mimeType: "application/json" }, accepted, payload };
}

const tokens = async (account) => BigInt((await front.rpc("getTokenAccountBalance", [account])).value.amount);

test("v2: the official client pays, the official facilitator verifies and settles on the local chain", async () => {
  const s = front.state;
  const accepted = requirements(1000);
  const payment = await payV2(0, accepted);
  const [payerBefore, payToBefore] = [await tokens(s.payerTokenAccounts[0]), await tokens(s.payToTokenAccount)];
  const fac = await facilitator();

  const verdict = await fac.verify(payment, accepted);
  assert.equal(verdict.isValid, true, JSON.stringify(verdict));
  assert.equal(verdict.payer, s.payers[0]);

  const started = performance.now();
  const settled = await fac.settle(payment, accepted);
  const took = performance.now() - started;
  assert.equal(settled.success, true, JSON.stringify(settled));
  assert.equal(settled.network, s.network);
  assert.equal(settled.payer, s.payers[0]);
  assert.ok(took < 5000, `settled in ${took} ms`);
  assert.equal(await tokens(s.payerTokenAccounts[0]), payerBefore - 1000n);
  assert.equal(await tokens(s.payToTokenAccount), payToBefore + 1000n);
  const status = (await front.rpc("getSignatureStatuses", [[settled.transaction]])).value[0];
  assert.equal(status.err, null);
  assert.equal((await front.rpc("getBalance", [s.payers[0]])).value, 0, "the client needs no SOL");

  // The same facilitator refuses it again; a fresh one (no memory of it) re-sends it, and the
  // node answers with the signature of the transaction that already landed: nothing moves.
  assert.equal((await fac.settle(payment, accepted)).errorReason, "duplicate_settlement");
  const again = await (await facilitator()).settle(payment, accepted);
  assert.equal(again.success, true);
  assert.equal(again.transaction, settled.transaction);
  assert.equal(await tokens(s.payerTokenAccounts[0]), payerBefore - 1000n, "the payer paid once");
  assert.equal(await tokens(s.payToTokenAccount), payToBefore + 1000n);
});

test("v1: the official v1 client pays on solana-devnet, and the v1 facilitator settles it", async () => {
  const s = front.state;
  const accepted = {
    scheme: "exact",
    network: s.v1Network,
    maxAmountRequired: "2500",
    resource: "http://127.0.0.1/run",
    description: "test",
    mimeType: "application/json",
    payTo: s.payTo,
    maxTimeoutSeconds: 60,
    asset: s.mint,
    extra: { feePayer: s.feePayer },
  };
  const client = new ExactSvmClientV1(await signerOf(s.payerKeys[1]), { rpcUrl: s.rpcUrl });
  const payment = await client.createPaymentPayload(1, accepted);
  assert.equal(payment.network, "solana-devnet");
  const [payerBefore, payToBefore] = [await tokens(s.payerTokenAccounts[1]), await tokens(s.payToTokenAccount)];
  const fac = await facilitator(ExactSvmFacilitatorV1);
  const verdict = await fac.verify(payment, accepted);
  assert.equal(verdict.isValid, true, JSON.stringify(verdict));
  const settled = await fac.settle(payment, accepted);
  assert.equal(settled.success, true, JSON.stringify(settled));
  assert.equal(await tokens(s.payerTokenAccounts[1]), payerBefore - 2500n);
  assert.equal(await tokens(s.payToTokenAccount), payToBefore + 2500n);
});

test("refused payments get the official reason codes", async () => {
  const s = front.state;
  const fac = await facilitator();
  const before = await tokens(s.payerTokenAccounts[2]);

  // The client pays 1000 where 2000 is asked.
  const short = await payV2(2, requirements(1000));
  const wrongAmount = await fac.verify({ ...short, accepted: requirements(2000) }, requirements(2000));
  assert.equal(wrongAmount.isValid, false);
  assert.equal(wrongAmount.invalidReason, "invalid_exact_svm_payload_amount_mismatch");

  // More than the payer holds: the simulation fails in the transfer (SPL "insufficient funds").
  const tooMuch = requirements(5000_000000);
  const overBalance = await fac.verify(await payV2(2, tooMuch), tooMuch);
  assert.equal(overBalance.invalidReason, "invalid_exact_svm_transaction_simulation_failed");
  // (kit reads the node's numbers as bigints, which the SDK writes as strings.)
  assert.match(overBalance.invalidMessage, /"InstructionError":\["2",\{"Custom":"1"\}\]/);

  // Built on a blockhash that then expired.
  const accepted = requirements(1000);
  const stale = await payV2(2, accepted);
  await front.rpc("litesvm_expireBlockhash");
  const expired = await fac.verify(stale, accepted);
  assert.equal(expired.invalidReason, "invalid_exact_svm_transaction_simulation_failed");
  assert.match(expired.invalidMessage, /BlockhashNotFound/);
  const notSettled = await fac.settle(stale, accepted);
  assert.equal(notSettled.success, false);
  assert.equal(notSettled.errorReason, "invalid_exact_svm_transaction_simulation_failed");

  assert.equal(await tokens(s.payerTokenAccounts[2]), before, "no refused payment moved any money");
  // A payment made on the new blockhash goes through.
  const fresh = await payV2(2, accepted);
  assert.equal((await fac.settle(fresh, accepted)).success, true);
  assert.equal(await tokens(s.payerTokenAccounts[2]), before - 1000n);
});
