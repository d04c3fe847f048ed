// Tests for the x402 Permit2 proxies (contracts/out/X402{Exact,Upto}Permit2Proxy.json) on a
// real local chain with the real Permit2 (its creation code as scripts/install-permit2.sh
// installs it) at its canonical address and the proxies' runtime code at theirs, as the devnet
// places them. Run from tools/ with `npm run test:contracts`.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { join } from "node:path";
import * as kit from "../test-support/chain.mjs";

const { CHAIN_ID, confirmed, eip712Fields, loadArtifact, rejectsWith, viem } = kit;
const { toFunctionSelector, toEventSelector, toFunctionSignature, parseSignature } = viem;
const PERMIT2 = kit.permit2.address;

const EXACT_PROXY = "0x402085c248EeA27D92E8b30b2C58ed07f9E20001";
const UPTO_PROXY = "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002";
const token = loadArtifact("X402Token");
const exact = loadArtifact("X402ExactPermit2Proxy");
const upto = loadArtifact("X402UptoPermit2Proxy");

let chain;
let publicClient;
let facilitator; // dev account 0: deploys, mints, submits settlements
let payer; // dev account 1: signs, never sends a transaction
let payee; // dev account 2
let stranger; // dev account 3
let asset; // an X402Token whose payer has approved Permit2
let clock; // the chain's time when the suite started
const wallets = {};
let nonce = 0n;

before(async () => {
  chain = await kit.startChain(4);
  publicClient = chain.publicClient;
  [facilitator, payer, payee, stranger] = chain.accounts;
  for (const account of chain.accounts) wallets[account.address] = chain.walletClient(account);
  await kit.permit2.deploy(wallets[facilitator.address], publicClient);
  await chain.testClient.setCode({ address: EXACT_PROXY, bytecode: exact.deployedBytecode });
  await chain.testClient.setCode({ address: UPTO_PROXY, bytecode: upto.deployedBytecode });
  asset = await newToken();
  await call(payer, asset, token.abi, "approve", [PERMIT2, 2n ** 256n - 1n]);
  clock = (await publicClient.getBlock()).timestamp;
});

after(() => chain?.stop());

async function newToken() {
  const hash = await wallets[facilitator.address].deployContract({
    abi: token.abi,
    bytecode: token.bytecode,
    args: ["USD Coin", "2", facilitator.address],
  });
  const address = (await confirmed(publicClient, hash, "token deployment")).contractAddress;
  await call(facilitator, address, token.abi, "mint", [payer.address, 10_000n]);
  return address;
}

const call = (...args) => chain.call(...args);

const balance = (owner, of = asset) =>
  publicClient.readContract({ address: of, abi: token.abi, functionName: "balanceOf", args: [owner] });

/// A payer's Permit2 authorization for `amount` of `asset` to the proxy, with the witness the
/// scheme binds, signed as an x402 client signs it: the settle call's first arguments.
async function authorize(kind, { amount = 600n, witness: extra = {}, signer = payer, token: of = asset } = {}) {
  nonce += 1n;
  const witness =
    kind === "upto"
      ? { to: payee.address, facilitator: facilitator.address, validAfter: 0n, ...extra }
      : { to: payee.address, validAfter: 0n, ...extra };
  const permit = { permitted: { token: of, amount }, nonce, deadline: clock + 3_600n };
  const signature = await signer.signTypedData({
    domain: { name: "Permit2", chainId: CHAIN_ID, verifyingContract: PERMIT2 },
    types: {
      PermitWitnessTransferFrom: eip712Fields(
        "TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline,Witness witness",
      ),
      TokenPermissions: eip712Fields("address token,uint256 amount"),
      Witness: eip712Fields(
        kind === "upto" ? "address to,address facilitator,uint256 validAfter" : "address to,uint256 validAfter",
      ),
    },
    primaryType: "PermitWitnessTransferFrom",
    message: { ...permit, spender: kind === "upto" ? UPTO_PROXY : EXACT_PROXY, witness },
  });
  return { permit, witness, signature };
}

const settleUpto = (from, { permit, witness, signature }, amount) =>
  call(from, UPTO_PROXY, upto.abi, "settle", [permit, amount, payer.address, witness, signature]);
const settleExact = (from, { permit, witness, signature }, owner = payer.address) =>
  call(from, EXACT_PROXY, exact.abi, "settle", [permit, owner, witness, signature]);

describe("interface", () => {
  test("every function, event and error the official @x402/evm 2.27 calls is there, same selectors", async () => {
    const require = createRequire(join(kit.toolsDir, "package.json"));
    const official = require("@x402/evm");
    const selectors = (abi) =>
      new Set(
        abi.map((item) =>
          item.type === "event" ? toEventSelector(item) : `${item.type}:${toFunctionSelector(toFunctionSignature(item))}`,
        ),
      );
    for (const [ours, theirs] of [
      [exact.abi, official.x402ExactPermit2ProxyABI],
      [upto.abi, official.x402UptoPermit2ProxyABI],
    ]) {
      const have = selectors(ours);
      const want = selectors(theirs);
      assert.ok(want.size >= 13, "the official ABI was read");
      for (const selector of want) assert.ok(have.has(selector), `missing ${selector}`);
    }
  });

  test("Permit2's address and the witness types are the ones clients sign", async () => {
    for (const [address, abi, witness] of [
      [EXACT_PROXY, exact.abi, "Witness(address to,uint256 validAfter)"],
      [UPTO_PROXY, upto.abi, "Witness(address to,address facilitator,uint256 validAfter)"],
    ]) {
      const read = (functionName) => publicClient.readContract({ address, abi, functionName });
      assert.equal(await read("PERMIT2"), PERMIT2);
      assert.equal(await read("WITNESS_TYPEHASH"), viem.keccak256(viem.toHex(witness)));
      assert.equal(
        await read("WITNESS_TYPE_STRING"),
        `Witness witness)TokenPermissions(address token,uint256 amount)${witness}`,
      );
    }
  });
});

describe("upto", () => {
  test("the witnessed facilitator settles the usage, once, up to the signed maximum", async () => {
    const [payerBefore, payeeBefore] = [await balance(payer.address), await balance(payee.address)];
    const signed = await authorize("upto", { amount: 600n });
    await settleUpto(facilitator, signed, 185n);
    assert.equal(await balance(payee.address), payeeBefore + 185n);
    assert.equal(await balance(payer.address), payerBefore - 185n);
    // The nonce is spent: the rest of the maximum cannot be taken afterwards.
    await assert.rejects(settleUpto(facilitator, signed, 100n));
    assert.equal(await balance(payee.address), payeeBefore + 185n);
  });

  test("the whole maximum may be settled, not a unit more", async () => {
    const signed = await authorize("upto", { amount: 600n });
    await rejectsWith(settleUpto(facilitator, signed, 601n), "AmountExceedsPermitted");
    const before = await balance(payee.address);
    await settleUpto(facilitator, signed, 600n);
    assert.equal(await balance(payee.address), before + 600n);
  });

  test("only the facilitator named in the witness may submit", async () => {
    const signed = await authorize("upto");
    await rejectsWith(settleUpto(stranger, signed, 10n), "UnauthorizedFacilitator");
    // Naming the stranger instead breaks the payer's signature.
    const forged = { ...signed, witness: { ...signed.witness, facilitator: stranger.address } };
    await assert.rejects(settleUpto(stranger, forged, 10n));
  });

  test("zero, a zero owner or payee, and a payment before validAfter are refused", async () => {
    await rejectsWith(settleUpto(facilitator, await authorize("upto"), 0n), "InvalidAmount");
    const signed = await authorize("upto");
    await rejectsWith(
      call(facilitator, UPTO_PROXY, upto.abi, "settle", [signed.permit, 5n, viem.zeroAddress, signed.witness, signed.signature]),
      "InvalidOwner",
    );
    const nowhere = await authorize("upto", { witness: { to: viem.zeroAddress } });
    await rejectsWith(settleUpto(facilitator, nowhere, 5n), "InvalidDestination");
    const later = await authorize("upto", { witness: { validAfter: clock + 86_400n } });
    await rejectsWith(settleUpto(facilitator, later, 5n), "PaymentTooEarly");
  });

  test("a payee changed after signing moves nothing", async () => {
    const signed = await authorize("upto");
    const before = await balance(stranger.address);
    await assert.rejects(settleUpto(facilitator, { ...signed, witness: { ...signed.witness, to: stranger.address } }, 5n));
    assert.equal(await balance(stranger.address), before);
  });

  test("with an EIP-2612 approval a payer with no allowance pays in the same transaction", async () => {
    const fresh = await newToken();
    const signed = await authorize("upto", { token: fresh, amount: 300n });
    const approval = { owner: payer.address, spender: PERMIT2, value: 300n, nonce: 0n, deadline: clock + 3_600n };
    const { r, s, v } = parseSignature(
      await payer.signTypedData({
        domain: { name: "USD Coin", version: "2", chainId: CHAIN_ID, verifyingContract: fresh },
        types: { Permit: eip712Fields("address owner,address spender,uint256 value,uint256 nonce,uint256 deadline") },
        primaryType: "Permit",
        message: approval,
      }),
    );
    const permit2612 = { value: 300n, deadline: approval.deadline, r, s, v: Number(v) };
    const args = (value) => [{ ...permit2612, value }, signed.permit, 120n, payer.address, signed.witness, signed.signature];
    await rejectsWith(call(facilitator, UPTO_PROXY, upto.abi, "settleWithPermit", args(299n)), "Permit2612AmountMismatch");
    await call(facilitator, UPTO_PROXY, upto.abi, "settleWithPermit", args(300n));
    assert.equal(await balance(payee.address, fresh), 120n);
  });
});

describe("exact", () => {
  test("moves exactly the permitted amount to the witnessed payee, once", async () => {
    const before = await balance(payee.address);
    const signed = await authorize("exact", { amount: 250n });
    await settleExact(stranger, signed); // anyone may submit an exact payment
    assert.equal(await balance(payee.address), before + 250n);
    await assert.rejects(settleExact(facilitator, signed));
    assert.equal(await balance(payee.address), before + 250n);
  });

  test("a changed payee or owner, a zero amount and an early payment are refused", async () => {
    const signed = await authorize("exact");
    await assert.rejects(settleExact(facilitator, { ...signed, witness: { ...signed.witness, to: stranger.address } }));
    await rejectsWith(settleExact(facilitator, signed, viem.zeroAddress), "InvalidOwner");
    await rejectsWith(settleExact(facilitator, await authorize("exact", { amount: 0n })), "InvalidAmount");
    const later = await authorize("exact", { witness: { validAfter: clock + 86_400n } });
    await rejectsWith(settleExact(facilitator, later), "PaymentTooEarly");
  });
});
