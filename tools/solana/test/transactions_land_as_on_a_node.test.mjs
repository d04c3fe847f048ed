// Transactions built and signed by @solana/kit land on the local chain as on a node: balances
// move, the fee is charged, statuses and the transaction can be read back; an instruction
// error lands with its fee; what cannot land (bad signature, expired blockhash) is refused with
// a node's error codes; a landed transaction sent again gives its signature.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, test } from "node:test";
import {
  AccountRole,
  appendTransactionMessageInstructions,
  createKeyPairSignerFromBytes,
  createSolanaRpc,
  createTransactionMessage,
  getBase58Encoder,
  getBase64EncodedWireTransaction,
  getSignatureFromTransaction,
  pipe,
  setTransactionMessageFeePayerSigner,
  setTransactionMessageLifetimeUsingBlockhash,
  signTransactionMessageWithSigners,
} from "@solana/kit";
import { startFront } from "../front.mjs";
import { createAssociatedTokenIdempotent, keypairFromSeed, u64le } from "../wire.mjs";

const TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const COMPUTE_BUDGET = "ComputeBudget111111111111111111111111111111";
const MEMO = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr";

let front;
let kitRpc;
let feePayer;
let payer;
before(async () => {
  front = await startFront(["--seed", "transactions", "--payers", "2"]);
  kitRpc = createSolanaRpc(front.state.rpcUrl);
  const signer = (key) => createKeyPairSignerFromBytes(getBase58Encoder().encode(key));
  feePayer = await signer(front.state.feePayerKey);
  payer = await signer(front.state.payerKeys[0]);
});
after(() => front?.stop());

/// A TransferChecked of `amount` from payer 0's token account to payTo's, paid for by the fee
/// payer, with a compute-unit limit of 20000 at 1 micro-lamport per unit and a random memo (so
/// no two are the same transaction), as x402 clients send it; signed by kit. Returns `{ wire (base64), signature, messageBytes }`.
async function transfer(amount, { blockhash } = {}) {
  const s = front.state;
  const latest = blockhash ?? (await kitRpc.getLatestBlockhash().send()).value;
  const instructions = [
    { programAddress: COMPUTE_BUDGET, data: Uint8Array.from([2, 0x20, 0x4e, 0, 0]) },
    { programAddress: COMPUTE_BUDGET, data: Uint8Array.from([3, ...u64le(1)]) },
    {
      programAddress: TOKEN,
      accounts: [
        { address: s.payerTokenAccounts[0], role: AccountRole.WRITABLE },
        { address: s.mint, role: AccountRole.READONLY },
        { address: s.payToTokenAccount, role: AccountRole.WRITABLE },
        { address: payer.address, role: AccountRole.READONLY_SIGNER, signer: payer },
      ],
      data: Uint8Array.from([12, ...u64le(amount), 6]),
    },
    { programAddress: MEMO, data: new TextEncoder().encode(randomBytes(16).toString("hex")) },
  ];
  const message = pipe(
    createTransactionMessage({ version: 0 }),
    (m) => setTransactionMessageFeePayerSigner(feePayer, m),
    (m) => setTransactionMessageLifetimeUsingBlockhash(latest, m),
    (m) => appendTransactionMessageInstructions(instructions, m),
  );
  const signed = await signTransactionMessageWithSigners(message);
  return { wire: getBase64EncodedWireTransaction(signed), signature: getSignatureFromTransaction(signed), messageBytes: signed.messageBytes };
}

const tokenBalance = async (account) => BigInt((await front.rpc("getTokenAccountBalance", [account])).value.amount);
const lamports = async (account) => BigInt((await front.rpc("getBalance", [account])).value);

test("a TransferChecked lands: tokens move, the fee is charged, and it reads back as finalized", async () => {
  const s = front.state;
  const [fromBefore, toBefore, feeBefore] = [await tokenBalance(s.payerTokenAccounts[0]), await tokenBalance(s.payToTokenAccount), await lamports(s.feePayer)];
  const slotBefore = await front.rpc("getSlot");
  const tx = await transfer(1_500_000n);
  const quoted = (await front.rpc("getFeeForMessage", [Buffer.from(tx.messageBytes).toString("base64")])).value;
  assert.equal(quoted, 10001, "two signatures and ceil(20000 CU × 1 µlamport)");

  const signature = await kitRpc.sendTransaction(tx.wire, { encoding: "base64" }).send();
  assert.equal(signature, tx.signature);
  assert.equal(await tokenBalance(s.payerTokenAccounts[0]), fromBefore - 1_500_000n);
  assert.equal(await tokenBalance(s.payToTokenAccount), toBefore + 1_500_000n);
  assert.equal(await lamports(s.feePayer), feeBefore - 10001n, "the runtime charged what getFeeForMessage quoted");
  assert.equal(await front.rpc("getSlot"), slotBefore + 1);

  const { value: statuses } = await kitRpc.getSignatureStatuses([signature]).send();
  assert.equal(statuses[0].confirmationStatus, "finalized");
  assert.equal(statuses[0].err, null);
  assert.equal(statuses[0].slot, BigInt(slotBefore + 1));

  await assert.rejects(front.rpc("getTransaction", [signature, { encoding: "json" }]), { code: -32015 });
  const got = await kitRpc.getTransaction(signature, { encoding: "json", maxSupportedTransactionVersion: 0 }).send();
  assert.equal(Number(got.version), 0);
  assert.equal(got.meta.err, null);
  assert.equal(got.meta.fee, 10001n);
  assert.equal(got.transaction.signatures[0], signature);
  assert.equal(got.transaction.message.accountKeys[0], s.feePayer);
  assert.equal(got.meta.preBalances[0] - got.meta.postBalances[0], 10001n);
  const b64 = await front.rpc("getTransaction", [signature, { encoding: "base64", maxSupportedTransactionVersion: 0 }]);
  assert.deepEqual(b64.transaction, [tx.wire, "base64"]);
  const history = await front.rpc("getSignaturesForAddress", [payer.address, { limit: 1 }]);
  assert.equal(history[0].signature, signature);
});

test("the same transaction sent again gives its signature and moves nothing; with preflight it is AlreadyProcessed", async () => {
  const s = front.state;
  const tx = await transfer(1000n);
  const first = await front.rpc("sendTransaction", [tx.wire, { encoding: "base64", skipPreflight: true }]);
  const balances = [await tokenBalance(s.payerTokenAccounts[0]), await lamports(s.feePayer)];
  const again = await front.rpc("sendTransaction", [tx.wire, { encoding: "base64", skipPreflight: true }]);
  assert.equal(again, first);
  assert.deepEqual([await tokenBalance(s.payerTokenAccounts[0]), await lamports(s.feePayer)], balances);
  await assert.rejects(front.rpc("sendTransaction", [tx.wire, { encoding: "base64" }]), (e) => e.code === -32002 && e.data.err === "AlreadyProcessed");
});

test("an instruction error lands with its error and its fee; with preflight it is refused", async () => {
  const s = front.state;
  const tooMuch = 10n ** 12n;
  const refused = await transfer(tooMuch);
  await assert.rejects(front.rpc("sendTransaction", [refused.wire, { encoding: "base64" }]), (e) => {
    assert.equal(e.code, -32002);
    assert.match(e.message, /Transaction simulation failed: Error processing Instruction 2: custom program error: 0x1/);
    assert.deepEqual(e.data.err, { InstructionError: [2, { Custom: 1 }] });
    assert.ok(e.data.logs.length > 0);
    return true;
  });
  assert.equal((await front.rpc("getSignatureStatuses", [[refused.signature]])).value[0], null, "a refused preflight lands nothing");

  const sim = await front.rpc("simulateTransaction", [refused.wire, { encoding: "base64" }]);
  assert.deepEqual(sim.value.err, { InstructionError: [2, { Custom: 1 }] });

  const feeBefore = await lamports(s.feePayer);
  const tokensBefore = await tokenBalance(s.payerTokenAccounts[0]);
  const landed = await transfer(tooMuch + 1n);
  const signature = await front.rpc("sendTransaction", [landed.wire, { encoding: "base64", skipPreflight: true }]);
  const status = (await front.rpc("getSignatureStatuses", [[signature]])).value[0];
  assert.deepEqual(status.err, { InstructionError: [2, { Custom: 1 }] });
  assert.deepEqual(status.status, { Err: { InstructionError: [2, { Custom: 1 }] } });
  assert.equal(await lamports(s.feePayer), feeBefore - 10001n, "the fee is charged");
  assert.equal(await tokenBalance(s.payerTokenAccounts[0]), tokensBefore, "no tokens moved");
});

test("a bad signature is refused with -32003, even without preflight", async () => {
  const tx = await transfer(1000n);
  const bytes = Buffer.from(tx.wire, "base64");
  bytes[1 + 64 + 5] ^= 0xff; // the payer's signature, the second one
  const tampered = bytes.toString("base64");
  await assert.rejects(front.rpc("sendTransaction", [tampered, { encoding: "base64", skipPreflight: true }]), { code: -32003 });
  await assert.rejects(front.rpc("simulateTransaction", [tampered, { encoding: "base64", sigVerify: true }]), { code: -32003 });
  assert.equal((await front.rpc("simulateTransaction", [tampered, { encoding: "base64" }])).value.err, null, "sigVerify is off by default");
  assert.equal((await front.rpc("getSignatureStatuses", [[tx.signature]])).value[0], null);
});

test("after the blockhash expires, transactions on it are refused with BlockhashNotFound and cost nothing", async () => {
  const s = front.state;
  const stale = await transfer(1000n);
  await front.rpc("litesvm_expireBlockhash");
  const sim = await front.rpc("simulateTransaction", [stale.wire, { encoding: "base64" }]);
  assert.equal(sim.value.err, "BlockhashNotFound");
  const replaced = await front.rpc("simulateTransaction", [stale.wire, { encoding: "base64", replaceRecentBlockhash: true }]);
  assert.equal(replaced.value.err, null);
  assert.equal(replaced.value.replacementBlockhash.blockhash, (await front.rpc("getLatestBlockhash")).value.blockhash);
  await assert.rejects(front.rpc("simulateTransaction", [stale.wire, { encoding: "base64", replaceRecentBlockhash: true, sigVerify: true }]), { code: -32602 });

  const feeBefore = await lamports(s.feePayer);
  for (const skipPreflight of [false, true])
    await assert.rejects(front.rpc("sendTransaction", [stale.wire, { encoding: "base64", skipPreflight }]), (e) => e.code === -32002 && e.data.err === "BlockhashNotFound");
  assert.equal(await lamports(s.feePayer), feeBefore);
  assert.equal((await front.rpc("getFeeForMessage", [Buffer.from(stale.messageBytes).toString("base64")])).value, null);
  const fresh = await transfer(1000n);
  assert.equal(await front.rpc("sendTransaction", [fresh.wire, { encoding: "base64" }]), fresh.signature);
});

test("simulation reports the CPI trace and post-state accounts on request", async () => {
  const s = front.state;
  const owner = keypairFromSeed(new Uint8Array(32).fill(3)).address;
  const create = createAssociatedTokenIdempotent({ payer: s.feePayer, owner, mint: s.mint });
  const roles = (k) => (k.isSigner ? (k.isWritable ? AccountRole.WRITABLE_SIGNER : AccountRole.READONLY_SIGNER) : k.isWritable ? AccountRole.WRITABLE : AccountRole.READONLY);
  const latest = (await kitRpc.getLatestBlockhash().send()).value;
  const message = pipe(
    createTransactionMessage({ version: 0 }),
    (m) => setTransactionMessageFeePayerSigner(feePayer, m),
    (m) => setTransactionMessageLifetimeUsingBlockhash(latest, m),
    (m) => appendTransactionMessageInstructions([{ programAddress: create.programId, accounts: create.keys.map((k) => ({ address: k.pubkey, role: roles(k) })), data: create.data }], m),
  );
  const wire = getBase64EncodedWireTransaction(await signTransactionMessageWithSigners(message));
  const ata = create.keys[1].pubkey;
  const sim = await front.rpc("simulateTransaction", [wire, { encoding: "base64", innerInstructions: true, accounts: { addresses: [ata], encoding: "jsonParsed" } }]);
  assert.equal(sim.value.err, null);
  assert.equal(sim.value.innerInstructions[0].index, 0);
  assert.ok(sim.value.innerInstructions[0].instructions.length >= 3, "the ATA program calls System and Token");
  assert.equal(sim.value.accounts[0].data.parsed.info.owner, owner);
  assert.ok(sim.value.unitsConsumed > 0);
  assert.equal((await front.rpc("getAccountInfo", [ata])).value, null, "a simulation changes nothing");
});
