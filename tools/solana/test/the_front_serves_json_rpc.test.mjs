// The local Solana chain's front speaks JSON-RPC 2.0 as a node does, announces what it set up
// in its ready line, and sets it up as announced.

import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";
import { address, getAddressEncoder, getProgramDerivedAddress } from "@solana/kit";
import { INSTRUCTION_ERRORS, TRANSACTION_ERRORS } from "../chain.mjs";
import { startFront } from "../front.mjs";
import { base58Decode, base58Encode, keypairFromSeed } from "../wire.mjs";

const TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const ATA = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL";
const DEVNET_USDC = "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU";

let front;
const stateFile = join(mkdtempSync(join(tmpdir(), "litesvm-rpc-")), "state.json");
before(async () => {
  front = await startFront(["--seed", "served", "--payers", "3", "--state-json", stateFile]);
});
after(() => front?.stop());

/// The associated token account of `owner` for `mint`, derived by @solana/kit.
async function kitAta(owner, mint) {
  const enc = getAddressEncoder();
  const [pda] = await getProgramDerivedAddress({ programAddress: address(ATA), seeds: [enc.encode(address(owner)), enc.encode(address(TOKEN)), enc.encode(address(mint))] });
  return pda;
}

test("the ready line announces the chain posing as devnet, with keys that match their addresses", async () => {
  const s = front.state;
  assert.match(s.rpcUrl, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal(s.network, "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1");
  assert.equal(s.v1Network, "solana-devnet");
  assert.equal(s.mint, DEVNET_USDC);
  assert.equal(s.decimals, 6);
  assert.equal(s.payers.length, 3);
  assert.equal(s.payerKeys.length, 3);
  const pairs = [[s.feePayer, s.feePayerKey], [s.payTo, s.payToKey], [s.mintAuthority, s.mintAuthorityKey], ...s.payers.map((p, i) => [p, s.payerKeys[i]])];
  for (const [addr, key] of pairs) {
    const secret = base58Decode(key);
    assert.equal(secret.length, 64);
    assert.equal(base58Encode(secret.subarray(32)), addr);
    assert.equal(keypairFromSeed(secret.subarray(0, 32)).address, addr);
  }
  assert.equal(new Set(pairs.map(([a]) => a)).size, pairs.length, "every role has its own key");
  assert.equal(await front.rpc("getGenesisHash"), "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG");
  assert.equal(await front.rpc("getHealth"), "ok");
  assert.equal(typeof (await front.rpc("getVersion"))["solana-core"], "string");
});

test("--state-json writes the ready line to a file only its owner can read", () => {
  assert.deepEqual(JSON.parse(readFileSync(stateFile, "utf8")), front.state);
  assert.equal(statSync(stateFile).mode & 0o777, 0o600);
});

test("the mint sits at the devnet USDC address with 6 decimals, and the payers hold 1000 USDC and no SOL", async () => {
  const s = front.state;
  const mint = await front.rpc("getAccountInfo", [s.mint, { encoding: "jsonParsed" }]);
  assert.equal(mint.value.owner, TOKEN);
  assert.deepEqual(mint.value.data.parsed, {
    type: "mint",
    info: { mintAuthority: s.mintAuthority, supply: String(3 * 1000_000000), decimals: 6, isInitialized: true, freezeAuthority: null },
  });
  const raw = Buffer.from((await front.rpc("getAccountInfo", [s.mint, { encoding: "base64" }])).value.data[0], "base64");
  assert.equal(raw.length, 82);
  assert.equal(raw[44], 6);

  for (const [i, payer] of s.payers.entries()) {
    const ata = await kitAta(payer, s.mint);
    assert.equal(s.payerTokenAccounts[i], ata);
    const balance = await front.rpc("getTokenAccountBalance", [ata]);
    assert.deepEqual(balance.value, { amount: "1000000000", decimals: 6, uiAmount: 1000, uiAmountString: "1000" });
    assert.equal((await front.rpc("getBalance", [payer])).value, 0);
    const parsed = (await front.rpc("getAccountInfo", [ata, { encoding: "jsonParsed" }])).value.data.parsed;
    assert.equal(parsed.info.owner, payer);
    assert.equal(parsed.info.mint, s.mint);
  }
  assert.equal(s.payToTokenAccount, await kitAta(s.payTo, s.mint));
  assert.equal((await front.rpc("getTokenAccountBalance", [s.payToTokenAccount])).value.amount, "0");
  assert.equal((await front.rpc("getBalance", [s.feePayer])).value, 1000_000000000);
});

test("the same seed gives the same chain; no seed gives fresh keys", async () => {
  const again = await startFront(["--seed", "served", "--payers", "3"]);
  const fresh = await startFront(["--payers", "3"]);
  try {
    const strip = ({ rpcUrl, pid, ...rest }) => rest;
    assert.deepEqual(strip(again.state), strip(front.state));
    assert.notEqual(fresh.state.feePayer, front.state.feePayer);
    assert.notEqual(fresh.state.payers[0], front.state.payers[0]);
  } finally {
    await again.stop();
    await fresh.stop();
  }
});

test("bad JSON, bad requests and unknown methods get JSON-RPC errors", async () => {
  assert.deepEqual(await front.call("{not json"), { jsonrpc: "2.0", error: { code: -32700, message: "Parse error" }, id: null });
  assert.deepEqual(await front.call({ jsonrpc: "2.0", id: 7, method: "getBlockProduction" }), {
    jsonrpc: "2.0",
    error: { code: -32601, message: "Method not found: getBlockProduction" },
    id: 7,
  });
  assert.equal((await front.call({ id: 8, method: "getSlot" })).error.code, -32600);
  assert.equal((await front.call([])).error.code, -32600);
  assert.equal((await front.call({ jsonrpc: "2.0", id: 9, method: "getSlot", params: { a: 1 } })).error.code, -32602);
  await assert.rejects(front.rpc("getBalance", ["not-an-address"]), { code: -32602, message: "getBalance: Invalid param: Invalid" });
  await assert.rejects(front.rpc("getTokenAccountBalance", [front.state.payers[0]]), { code: -32602 });
  await assert.rejects(front.rpc("sendTransaction", ["AAAA", { encoding: "base64" }]), { code: -32602 });
  // base58 account data is refused over 128 bytes, as a node refuses it.
  await assert.rejects(front.rpc("getAccountInfo", [front.state.payerTokenAccounts[0], { encoding: "base58" }]), { code: -32600 });
  const res = await fetch(front.state.rpcUrl);
  assert.equal(res.status, 405);
});

test("a batch gets one answer per request, in order, notifications left out", async () => {
  const replies = await front.call([
    { jsonrpc: "2.0", id: 1, method: "getSlot" },
    { jsonrpc: "2.0", method: "getSlot" },
    { jsonrpc: "2.0", id: "two", method: "nope" },
    { jsonrpc: "2.0", id: 3, method: "getBalance", params: [front.state.feePayer] },
    42,
  ]);
  assert.equal(replies.length, 4);
  assert.equal(replies[0].id, 1);
  assert.equal(typeof replies[0].result, "number");
  assert.deepEqual(replies[1], { jsonrpc: "2.0", error: { code: -32601, message: "Method not found: nope" }, id: "two" });
  assert.equal(replies[2].result.value, 1000_000000000);
  assert.equal(replies[3].error.code, -32600);
});

test("accounts come in base64, base58 and jsonParsed, one at a time or many", async () => {
  const s = front.state;
  const missing = keypairFromSeed(new Uint8Array(32).fill(7)).address;
  const many = await front.rpc("getMultipleAccounts", [[s.mint, missing, s.payToTokenAccount], { encoding: "jsonParsed" }]);
  assert.equal(many.value.length, 3);
  assert.equal(many.value[0].data.parsed.type, "mint");
  assert.equal(many.value[1], null);
  assert.equal(many.value[2].data.parsed.info.owner, s.payTo);
  const b64 = await front.rpc("getMultipleAccounts", [[s.feePayer]]);
  assert.deepEqual(b64.value[0].data, ["", "base64"]);
  const b58 = await front.rpc("getAccountInfo", [s.mint, { encoding: "base58", dataSlice: { offset: 44, length: 2 } }]);
  assert.deepEqual(b58.value.data, [base58Encode(Uint8Array.of(6, 1)), "base58"]);
  // jsonParsed falls back to base64 for accounts it cannot parse.
  const plain = await front.rpc("getAccountInfo", [s.feePayer, { encoding: "jsonParsed" }]);
  assert.deepEqual(plain.value.data, ["", "base64"]);
  const owned = await front.rpc("getProgramAccounts", [TOKEN, { encoding: "base64", filters: [{ dataSize: 165 }, { memcmp: { offset: 32, bytes: s.payTo } }] }]);
  assert.deepEqual(owned.map((a) => a.pubkey), [s.payToTokenAccount]);
});

test("the test methods set an account, move the blockhash on and warp the slot", async () => {
  const s = front.state;
  const target = keypairFromSeed(new Uint8Array(32).fill(9)).address;
  assert.equal(await front.rpc("litesvm_setAccount", [target, { lamports: 12345, owner: TOKEN, data: Buffer.from([1, 2, 3]).toString("base64"), executable: false }]), null);
  const acc = (await front.rpc("getAccountInfo", [target, { encoding: "base64" }])).value;
  assert.equal(acc.lamports, 12345);
  assert.equal(acc.owner, TOKEN);
  assert.deepEqual(acc.data, ["AQID", "base64"]);

  const { value: old } = await front.rpc("getLatestBlockhash");
  assert.equal((await front.rpc("isBlockhashValid", [old.blockhash])).value, true);
  const moved = await front.rpc("litesvm_expireBlockhash");
  assert.notEqual(moved, old.blockhash);
  assert.equal((await front.rpc("getLatestBlockhash")).value.blockhash, moved);
  assert.equal((await front.rpc("isBlockhashValid", [old.blockhash])).value, false);

  const slot = await front.rpc("getSlot");
  await front.rpc("litesvm_warpToSlot", [slot + 1000]);
  assert.equal(await front.rpc("getSlot"), slot + 1000);
  assert.equal(await front.rpc("getBlockHeight"), slot + 1000);
  assert.equal((await front.rpc("getEpochInfo")).absoluteSlot, slot + 1000);
  await assert.rejects(front.rpc("litesvm_warpToSlot", [slot]), { code: -32602 });

  const airdrop = await front.rpc("requestAirdrop", [s.payers[2], 5000]);
  assert.equal((await front.rpc("getBalance", [s.payers[2]])).value, 5000);
  assert.equal((await front.rpc("getSignatureStatuses", [[airdrop]])).value[0].confirmationStatus, "finalized");
  assert.equal(await front.rpc("getMinimumBalanceForRentExemption", [165]), 2039280);
});

test("the error-name tables match the installed litesvm's enums", () => {
  const require = createRequire(import.meta.url);
  const dts = readFileSync(join(require.resolve("litesvm/dist/internal.js"), "..", "internal.d.ts"), "utf8");
  const enumNames = (name) => {
    const body = dts.match(new RegExp(`export declare const enum ${name} \\{([^}]*)\\}`))[1];
    return [...body.matchAll(/(\w+) = (\d+)/g)].map(([, n, v], i) => (assert.equal(Number(v), i), n));
  };
  assert.deepEqual(TRANSACTION_ERRORS, enumNames("TransactionErrorFieldless"));
  assert.deepEqual(INSTRUCTION_ERRORS, enumNames("InstructionErrorFieldless"));
});
