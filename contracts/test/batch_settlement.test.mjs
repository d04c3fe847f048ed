// Tests for the batch-settlement escrow and its deposit collectors
// (contracts/out/{X402BatchSettlement,ERC3009DepositCollector,Permit2DepositCollector}.json) on a
// real local chain, with their runtime code at the canonical addresses as the devnet places
// them, the real Permit2 at its own, and our token. Payloads, vouchers and authorizer
// signatures are built with the official @x402/evm 2.27 code wherever it exports it (its client
// builds the deposit and signs vouchers; its facilitator's helpers sign claim batches and
// refunds and encode collector data), so what passes here is what official peers send; the last
// suite runs the official facilitator itself against these contracts. Run from tools/ with
// `npm run test:contracts`.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import * as kit from "../test-support/chain.mjs";

const { CHAIN_ID, confirmed, eip712Fields, loadArtifact, randomBytes32, rejectsWith, viem } = kit;
const { encodeAbiParameters, encodeFunctionData, hashTypedData, keccak256, parseEventLogs, parseSignature, toHex } = viem;

const require = createRequire(join(kit.toolsDir, "package.json"));
const sdk = require("@x402/evm");
const sdkClient = require("@x402/evm/batch-settlement/client");

/// Something of @x402/evm's bundled dist that no entry point exports (the escrow's ABI, the
/// collector-data encoders, the authorizer signers): imported from the chunk that declares it.
async function sdkInternal(name) {
  const dir = join(kit.toolsDir, "node_modules", "@x402", "evm", "dist", "esm");
  const file = readdirSync(dir).find(
    (f) => f.endsWith(".mjs") && new RegExp(`(var|function) ${name}\\b`).test(readFileSync(join(dir, f), "utf8")),
  );
  assert.ok(file, `${name} is in @x402/evm's dist`);
  const value = (await import(pathToFileURL(join(dir, file)).href))[name];
  assert.ok(value, `${name} is exported by ${file}`);
  return value;
}

const NETWORK = `eip155:${CHAIN_ID}`;
const PERMIT2 = kit.permit2.address;
const BATCH = sdk.BATCH_SETTLEMENT_ADDRESS;
const ERC3009_COLLECTOR = sdk.ERC3009_DEPOSIT_COLLECTOR_ADDRESS;
const DELAY = 900;

const token = loadArtifact("X402Token");
const wallet = loadArtifact("X402Wallet");
const batch = loadArtifact("X402BatchSettlement");
const erc3009Collector = loadArtifact("ERC3009DepositCollector");
const permit2Collector = loadArtifact("Permit2DepositCollector");
/// The escrow's ABI with the collectors' errors, which a deposit passes on.
const BATCH_ABI = [...batch.abi, ...[erc3009Collector, permit2Collector].flatMap((a) => a.abi.filter((i) => i.type === "error"))];

const official = {};
let chain;
let publicClient;
let operator; // dev account 0: deploys, mints, submits the payer's deposits (a facilitator)
let payer; // signs deposits and vouchers, and withdraws
let receiver;
let receiverAuthorizer; // signs claim batches and refunds
let payerAuthorizer; // a hot key that signs vouchers for the payer
let stranger;
let asset; // our token; the payer holds some and has approved Permit2
let PERMIT2_COLLECTOR;

before(async () => {
  for (const name of [
    "batchSettlementABI",
    "PERMIT2_DEPOSIT_COLLECTOR_ADDRESS",
    "batchPermit2WitnessTypes",
    "buildErc3009CollectorData",
    "buildPermit2CollectorData",
    "buildEip2612PermitData",
    "signClaimBatch",
    "signRefund",
  ]) {
    official[name] = await sdkInternal(name);
  }
  PERMIT2_COLLECTOR = official.PERMIT2_DEPOSIT_COLLECTOR_ADDRESS;
  chain = await kit.startChain(6);
  publicClient = chain.publicClient;
  [operator, payer, receiver, receiverAuthorizer, payerAuthorizer, stranger] = chain.accounts;
  await kit.permit2.deploy(chain.walletClient(operator), publicClient);
  for (const [address, artifact] of [
    [BATCH, batch],
    [ERC3009_COLLECTOR, erc3009Collector],
    [PERMIT2_COLLECTOR, permit2Collector],
  ]) {
    await chain.testClient.setCode({ address, bytecode: artifact.deployedBytecode });
  }
  asset = await newToken(payer.address, 1_000_000n);
  await chain.call(payer, asset, token.abi, "approve", [PERMIT2, 2n ** 256n - 1n]);
});

after(() => chain?.stop());

async function newToken(holder, amount) {
  const hash = await chain.walletClient(operator).deployContract({
    abi: token.abi,
    bytecode: token.bytecode,
    args: ["USD Coin", "2", operator.address],
  });
  const address = viem.getAddress((await confirmed(publicClient, hash, "token deployment")).contractAddress);
  await chain.call(operator, address, token.abi, "mint", [holder, amount]);
  return address;
}

const balance = (owner, of = asset) =>
  publicClient.readContract({ address: of, abi: token.abi, functionName: "balanceOf", args: [owner] });
const read = (functionName, args = []) => publicClient.readContract({ address: BATCH, abi: batch.abi, functionName, args });
const escrow = (from, functionName, args) => chain.call(from, BATCH, BATCH_ABI, functionName, args);
const now = async () => (await publicClient.getBlock()).timestamp;

/// A fresh channel from `payer` to `receiver` in `asset` (a random salt keeps tests apart).
const channel = (overrides = {}) => ({
  payer: payer.address,
  payerAuthorizer: viem.zeroAddress,
  receiver: receiver.address,
  receiverAuthorizer: receiverAuthorizer.address,
  token: asset,
  withdrawDelay: DELAY,
  salt: randomBytes32(),
  ...overrides,
});
const idOf = (config) => sdkClient.computeChannelId(config, NETWORK);

/// The payment requirements a batch-settlement server offers for `config`'s channel.
const requirements = (config) => ({
  scheme: "batch-settlement",
  network: NETWORK,
  asset: config.token,
  amount: "100",
  payTo: config.receiver,
  // Long enough to outlast the clock jumps of the withdrawal tests.
  maxTimeoutSeconds: 90 * 86_400,
  extra: { name: "USD Coin", version: "2", receiverAuthorizer: config.receiverAuthorizer, withdrawDelay: config.withdrawDelay },
});

/// The official client's EIP-3009 deposit payload for `amount` into `config`'s channel (signed
/// by `signer`, the payer), and the collector data the official facilitator makes of it.
async function erc3009Deposit(config, amount, signer = payer) {
  const { payload } = await sdkClient.createBatchSettlementEIP3009DepositPayload(
    signer,
    2,
    requirements(config),
    config,
    amount.toString(),
    amount.toString(),
  );
  const auth = payload.deposit.authorization.erc3009Authorization;
  return official.buildErc3009CollectorData(auth.validAfter, auth.validBefore, auth.salt, auth.signature);
}

/// Deposits `amount` into `config`'s channel through the EIP-3009 collector, sent by `from`.
async function deposit(config, amount, from = operator) {
  return escrow(from, "deposit", [config, amount, ERC3009_COLLECTOR, await erc3009Deposit(config, amount)]);
}

let permit2Nonce = 0n;
/// Collector data for a Permit2 deposit of `amount` into `config`'s channel, with an optional
/// EIP-2612 approval (`eip2612`, encoded) for a payer without an allowance.
async function permit2Deposit(config, amount, eip2612 = "0x") {
  permit2Nonce += 1n;
  const deadline = (await now()) + 3_600n;
  const signature = await payer.signTypedData({
    domain: { name: "Permit2", chainId: CHAIN_ID, verifyingContract: PERMIT2 },
    types: official.batchPermit2WitnessTypes,
    primaryType: "PermitWitnessTransferFrom",
    message: {
      permitted: { token: config.token, amount },
      spender: PERMIT2_COLLECTOR,
      nonce: permit2Nonce,
      deadline,
      witness: { channelId: idOf(config) },
    },
  });
  return official.buildPermit2CollectorData(permit2Nonce, deadline, signature, eip2612);
}

/// A claim row: `signer`'s voucher for `config`'s channel up to `max`, claiming `total`.
async function claimRow(config, max, total, signer = payer) {
  const { signature } = await sdkClient.signVoucher(signer, idOf(config), max.toString(), NETWORK);
  return { voucher: { channel: config, maxClaimableAmount: max }, signature, totalClaimed: total };
}

/// The receiver authorizer's `ClaimBatch` signature of `rows`, as the official facilitator
/// signs it.
const authorizeClaims = (rows, signer = receiverAuthorizer) => official.signClaimBatch(signer, rows, NETWORK);

/// The receiver authorizer's `Refund` signature, as the official facilitator signs it.
const authorizeRefund = (config, amount, nonce, signer = receiverAuthorizer) =>
  official.signRefund(signer, idOf(config), amount.toString(), nonce.toString(), NETWORK);

const channelState = async (config) => {
  const [balance, totalClaimed] = await read("channels", [idOf(config)]);
  return { balance, totalClaimed };
};
const receiverState = async (config) => {
  const [totalClaimed, totalSettled] = await read("receivers", [config.receiver, config.token]);
  return { totalClaimed, totalSettled };
};

describe("interface", () => {
  test("every function and event of the official @x402/evm 2.27 escrow ABI is there, same selectors", () => {
    const { toEventSelector, toFunctionSelector, toFunctionSignature } = viem;
    const selectors = (abi) =>
      new Set(
        abi
          .filter((item) => item.type === "function" || item.type === "event")
          .map((item) =>
            item.type === "event" ? toEventSelector(item) : `${toFunctionSignature(item)} ${toFunctionSelector(item)}`,
          ),
      );
    const have = selectors(batch.abi);
    const want = selectors(official.batchSettlementABI);
    assert.ok(want.size >= 19, "the official ABI was read");
    for (const selector of want) assert.ok(have.has(selector), `missing ${selector}`);
    // Same outputs too: the SDK decodes what the views return.
    for (const item of official.batchSettlementABI.filter((i) => i.type === "function")) {
      const ours = batch.abi.find((i) => i.type === "function" && i.name === item.name);
      assert.deepEqual(
        ours.outputs.map((o) => o.type),
        item.outputs.map((o) => o.type),
        `${item.name} outputs`,
      );
      assert.equal(ours.stateMutability, item.stateMutability, `${item.name} mutability`);
    }
  });

  test("channel ids and digests equal viem's hashTypedData with the SDK's domain and types", async () => {
    const domain = { ...sdk.BATCH_SETTLEMENT_DOMAIN, chainId: CHAIN_ID, verifyingContract: BATCH };
    const config = channel({ payerAuthorizer: payerAuthorizer.address, withdrawDelay: 86_400 });
    const id = idOf(config);
    assert.equal(await read("getChannelId", [config]), id);
    assert.equal(
      await read("CHANNEL_CONFIG_TYPEHASH"),
      keccak256(
        toHex(
          "ChannelConfig(address payer,address payerAuthorizer,address receiver,address receiverAuthorizer,address token,uint40 withdrawDelay,bytes32 salt)",
        ),
      ),
    );
    const voucher = { channelId: id, maxClaimableAmount: 12_345n };
    assert.equal(
      await read("getVoucherDigest", [id, 12_345n]),
      hashTypedData({ domain, types: sdk.voucherTypes, primaryType: "Voucher", message: voucher }),
    );
    assert.equal(
      await read("getRefundDigest", [id, 7n, 500n]),
      hashTypedData({ domain, types: sdk.refundTypes, primaryType: "Refund", message: { channelId: id, nonce: 7n, amount: 500n } }),
    );
    const other = channel();
    const rows = [await claimRow(config, 900n, 400n), await claimRow(other, 50n, 50n)];
    const entries = rows.map((r) => ({
      channelId: idOf(r.voucher.channel),
      maxClaimableAmount: r.voucher.maxClaimableAmount,
      totalClaimed: r.totalClaimed,
    }));
    assert.equal(
      await read("getClaimBatchDigest", [rows]),
      hashTypedData({ domain, types: sdk.claimBatchTypes, primaryType: "ClaimBatch", message: { claims: entries } }),
    );
    // The id binds every field: another salt is another channel.
    assert.notEqual(await read("getChannelId", [{ ...config, salt: randomBytes32() }]), id);
  });

  test("the collectors name the escrow and Permit2, and derive the EIP-3009 nonce as clients do", async () => {
    const view = (address, abi, functionName, args = []) => publicClient.readContract({ address, abi, functionName, args });
    for (const [address, abi] of [
      [ERC3009_COLLECTOR, erc3009Collector.abi],
      [PERMIT2_COLLECTOR, permit2Collector.abi],
    ]) {
      assert.equal(await view(address, abi, "BATCH_SETTLEMENT"), BATCH);
    }
    assert.equal(await view(PERMIT2_COLLECTOR, permit2Collector.abi, "PERMIT2"), PERMIT2);
    const id = randomBytes32();
    assert.equal(
      await view(ERC3009_COLLECTOR, erc3009Collector.abi, "depositNonce", [id, 42n]),
      keccak256(encodeAbiParameters([{ type: "bytes32" }, { type: "uint256" }], [id, 42n])),
    );
    assert.equal(
      await view(PERMIT2_COLLECTOR, permit2Collector.abi, "WITNESS_TYPE_STRING"),
      "DepositWitness witness)DepositWitness(bytes32 channelId)TokenPermissions(address token,uint256 amount)",
    );
  });
});

describe("deposit", () => {
  test("through the EIP-3009 collector: the escrow holds exactly the deposit, once", async () => {
    const config = channel();
    const [payerBefore, escrowBefore] = [await balance(payer.address), await balance(BATCH)];
    const data = await erc3009Deposit(config, 1_000n);
    const receipt = await escrow(stranger, "deposit", [config, 1_000n, ERC3009_COLLECTOR, data]);
    assert.deepEqual(await channelState(config), { balance: 1_000n, totalClaimed: 0n });
    assert.equal(await balance(BATCH), escrowBefore + 1_000n);
    assert.equal(await balance(payer.address), payerBefore - 1_000n);
    assert.equal(await balance(ERC3009_COLLECTOR), 0n);
    assert.ok(receipt.gasUsed < 300_000n, `deposit used ${receipt.gasUsed} gas`);
    // The same authorization again is refused by the token: its nonce is spent.
    await rejectsWith(escrow(stranger, "deposit", [config, 1_000n, ERC3009_COLLECTOR, data]), "authorization is used");
    // A second deposit adds up.
    await deposit(config, 500n);
    assert.equal((await channelState(config)).balance, 1_500n);
  });

  test("an EIP-3009 authorization works for its channel and amount only", async () => {
    const config = channel();
    const data = await erc3009Deposit(config, 1_000n);
    const elsewhere = { ...config, salt: randomBytes32() };
    await rejectsWith(escrow(operator, "deposit", [elsewhere, 1_000n, ERC3009_COLLECTOR, data]), "invalid signature");
    await rejectsWith(escrow(operator, "deposit", [config, 1_001n, ERC3009_COLLECTOR, data]), "invalid signature");
    const toStranger = { ...config, receiver: stranger.address };
    await rejectsWith(escrow(operator, "deposit", [toStranger, 1_000n, ERC3009_COLLECTOR, data]), "invalid signature");
    assert.equal((await channelState(elsewhere)).balance, 0n);
  });

  test("through the Permit2 collector: exactly the permitted deposit, bound to the channel", async () => {
    const config = channel();
    const escrowBefore = await balance(BATCH);
    const data = await permit2Deposit(config, 700n);
    const elsewhere = { ...config, salt: randomBytes32() };
    await assert.rejects(escrow(operator, "deposit", [elsewhere, 700n, PERMIT2_COLLECTOR, data]));
    await assert.rejects(escrow(operator, "deposit", [config, 701n, PERMIT2_COLLECTOR, data]));
    assert.equal(await balance(BATCH), escrowBefore);
    await escrow(operator, "deposit", [config, 700n, PERMIT2_COLLECTOR, data]);
    assert.equal((await channelState(config)).balance, 700n);
    assert.equal(await balance(BATCH), escrowBefore + 700n);
    await assert.rejects(escrow(operator, "deposit", [config, 700n, PERMIT2_COLLECTOR, data]));
  });

  test("with an EIP-2612 approval a payer without an allowance deposits in one transaction", async () => {
    const fresh = await newToken(payer.address, 5_000n);
    const config = channel({ token: fresh });
    const deadline = (await now()) + 3_600n;
    const { r, s, v } = parseSignature(
      await payer.signTypedData({
        domain: { name: "USD Coin", version: "2", chainId: CHAIN_ID, verifyingContract: fresh },
        types: { Permit: eip712Fields("address owner,address spender,uint256 value,uint256 nonce,uint256 deadline") },
        primaryType: "Permit",
        message: { owner: payer.address, spender: PERMIT2, value: 300n, nonce: 0n, deadline },
      }),
    );
    const approval = (value) => official.buildEip2612PermitData({ value, deadline, v: Number(v), r, s });
    await rejectsWith(
      escrow(operator, "deposit", [config, 300n, PERMIT2_COLLECTOR, await permit2Deposit(config, 300n, approval(299n))]),
      "Eip2612AmountMismatch",
    );
    await escrow(operator, "deposit", [config, 300n, PERMIT2_COLLECTOR, await permit2Deposit(config, 300n, approval(300n))]);
    assert.equal(await balance(BATCH, fresh), 300n);
    assert.equal((await channelState(config)).balance, 300n);
  });

  test("a bad config, a zero amount and a collector that delivers nothing are refused", async () => {
    const data = await erc3009Deposit(channel(), 10n);
    for (const [config, error] of [
      [channel({ withdrawDelay: 899 }), "WithdrawDelayOutOfRange"],
      [channel({ withdrawDelay: 2_592_001 }), "WithdrawDelayOutOfRange"],
      [channel({ receiverAuthorizer: viem.zeroAddress }), "InvalidChannelConfig"],
      [channel({ receiver: viem.zeroAddress }), "InvalidChannelConfig"],
    ]) {
      await rejectsWith(escrow(operator, "deposit", [config, 10n, ERC3009_COLLECTOR, data]), error);
    }
    await rejectsWith(escrow(operator, "deposit", [channel(), 0n, ERC3009_COLLECTOR, data]), "ZeroAmount");
    // A "collector" whose code just stops: the call succeeds and nothing arrives.
    const idle = "0x4020000000000000000000000000000000000bad";
    await chain.testClient.setCode({ address: idle, bytecode: "0x00" });
    await rejectsWith(escrow(operator, "deposit", [channel(), 10n, idle, "0x"]), "DepositNotReceived");
  });

  test("only the escrow may call a collector", async () => {
    const config = channel();
    const id = idOf(config);
    const erc3009Data = await erc3009Deposit(config, 10n);
    await rejectsWith(
      chain.call(stranger, ERC3009_COLLECTOR, erc3009Collector.abi, "collect", [payer.address, asset, 10n, id, erc3009Data]),
      "OnlyBatchSettlement",
    );
    const permit2Data = await permit2Deposit(config, 10n);
    await rejectsWith(
      chain.call(stranger, PERMIT2_COLLECTOR, permit2Collector.abi, "collect", [payer.address, asset, 10n, id, permit2Data]),
      "OnlyBatchSettlement",
    );
  });
});

describe("claim and settle", () => {
  test("claims then a settle pay the receiver exactly the claimed sum", async () => {
    const [a, b] = [channel(), channel({ payerAuthorizer: payerAuthorizer.address })];
    await deposit(a, 1_000n);
    await deposit(b, 1_000n);
    const receiverBefore = await balance(receiver.address);
    const settledBefore = (await receiverState(a)).totalSettled;
    // The receiver claims channel a itself (the payer signs: no payer authorizer).
    await escrow(receiver, "claim", [[await claimRow(a, 400n, 300n)]]);
    // Anyone submits a batch the receiver authorizer signed; b's vouchers come from its
    // payer authorizer.
    const rows = [await claimRow(a, 500n, 450n), await claimRow(b, 250n, 250n, payerAuthorizer)];
    await escrow(stranger, "claimWithSignature", [rows, await authorizeClaims(rows)]);
    assert.deepEqual(await channelState(a), { balance: 1_000n, totalClaimed: 450n });
    assert.deepEqual(await channelState(b), { balance: 1_000n, totalClaimed: 250n });
    assert.equal((await receiverState(a)).totalClaimed - settledBefore, 700n);
    assert.equal(await balance(receiver.address), receiverBefore, "claims move no tokens");

    const receipt = await escrow(stranger, "settle", [receiver.address, asset]);
    assert.equal(await balance(receiver.address), receiverBefore + 700n);
    const [settled] = parseEventLogs({ abi: batch.abi, eventName: "Settled", logs: receipt.logs });
    assert.deepEqual(settled.args, { receiver: receiver.address, token: asset, sender: stranger.address, amount: 700n });
    const state = await receiverState(a);
    assert.equal(state.totalSettled, state.totalClaimed);
    // Settling again pays nothing and says nothing.
    const again = await escrow(stranger, "settle", [receiver.address, asset]);
    assert.equal(parseEventLogs({ abi: batch.abi, eventName: "Settled", logs: again.logs }).length, 0);
    assert.equal(await balance(receiver.address), receiverBefore + 700n);
  });

  test("a replayed or lower voucher claim is a no-op", async () => {
    const config = channel();
    await deposit(config, 1_000n);
    const row = await claimRow(config, 600n, 600n);
    await escrow(receiver, "claim", [[row]]);
    const credited = (await receiverState(config)).totalClaimed;
    await escrow(receiver, "claim", [[row]]);
    await escrow(receiver, "claim", [[await claimRow(config, 600n, 100n)]]);
    const lower = [await claimRow(config, 300n, 300n)];
    await escrow(stranger, "claimWithSignature", [lower, await authorizeClaims(lower)]);
    assert.deepEqual(await channelState(config), { balance: 1_000n, totalClaimed: 600n });
    assert.equal((await receiverState(config)).totalClaimed, credited);
  });

  test("a claim above the voucher's ceiling or the balance is refused", async () => {
    const config = channel();
    await deposit(config, 1_000n);
    await rejectsWith(escrow(receiver, "claim", [[await claimRow(config, 400n, 401n)]]), "ClaimExceedsCeiling");
    await rejectsWith(escrow(receiver, "claim", [[await claimRow(config, 2_000n, 1_001n)]]), "ClaimExceedsBalance");
    // The whole balance is claimable.
    await escrow(receiver, "claim", [[await claimRow(config, 2_000n, 1_000n)]]);
    assert.equal((await channelState(config)).totalClaimed, 1_000n);
  });

  test("a voucher from the wrong key, or a claim by the wrong party, is refused", async () => {
    const plain = channel();
    const hot = channel({ payerAuthorizer: payerAuthorizer.address });
    await deposit(plain, 1_000n);
    await deposit(hot, 1_000n);
    await rejectsWith(escrow(receiver, "claim", [[await claimRow(plain, 100n, 100n, stranger)]]), "InvalidVoucherSignature");
    // With a payer authorizer only its key counts, not even the payer's.
    await rejectsWith(escrow(receiver, "claim", [[await claimRow(hot, 100n, 100n, payer)]]), "InvalidVoucherSignature");
    // A voucher re-aimed at a higher ceiling than signed.
    const forged = await claimRow(plain, 100n, 100n);
    forged.voucher.maxClaimableAmount = 900n;
    forged.totalClaimed = 900n;
    await rejectsWith(escrow(receiver, "claim", [[forged]]), "InvalidVoucherSignature");

    const row = await claimRow(plain, 100n, 100n);
    await rejectsWith(escrow(stranger, "claim", [[row]]), "NotReceiverOrAuthorizer");
    await rejectsWith(escrow(payer, "claim", [[row]]), "NotReceiverOrAuthorizer");
    await rejectsWith(escrow(stranger, "claimWithSignature", [[row], await authorizeClaims([row], stranger)]), "InvalidAuthorizerSignature");
    // A signed batch whose totals were changed afterwards.
    const signature = await authorizeClaims([row]);
    await rejectsWith(escrow(stranger, "claimWithSignature", [[{ ...row, totalClaimed: 50n }], signature]), "InvalidAuthorizerSignature");
    // Rows of another receiver authorizer cannot ride along.
    const foreign = channel({ receiverAuthorizer: stranger.address });
    const mixed = [row, await claimRow(foreign, 10n, 10n)];
    await rejectsWith(escrow(stranger, "claimWithSignature", [mixed, await authorizeClaims(mixed)]), "MixedReceiverAuthorizers");
    await rejectsWith(escrow(receiver, "claim", [[]]), "NoClaims");
    assert.equal((await channelState(plain)).totalClaimed, 0n);
    // The receiver authorizer may claim directly.
    await escrow(receiverAuthorizer, "claim", [[row]]);
    assert.equal((await channelState(plain)).totalClaimed, 100n);
  });

  test("a smart-wallet payer (ERC-1271) deposits and its vouchers are claimed", async () => {
    const owner = kit.randomAccount();
    const hash = await chain.walletClient(operator).deployContract({ abi: wallet.abi, bytecode: wallet.bytecode, args: [owner.address] });
    const address = (await confirmed(publicClient, hash, "wallet deployment")).contractAddress;
    await chain.call(operator, asset, token.abi, "mint", [address, 2_000n]);
    // The wallet accepts its owner's signature of the very digest.
    const signer = { address, signTypedData: (typed) => owner.signTypedData(typed) };
    const config = channel({ payer: address });
    const { payload } = await sdkClient.createBatchSettlementEIP3009DepositPayload(signer, 2, requirements(config), config, "800", "800");
    const auth = payload.deposit.authorization.erc3009Authorization;
    const data = official.buildErc3009CollectorData(auth.validAfter, auth.validBefore, auth.salt, auth.signature);
    await escrow(operator, "deposit", [config, 800n, ERC3009_COLLECTOR, data]);
    assert.equal(await balance(address), 1_200n);
    await escrow(receiver, "claim", [[await claimRow(config, 300n, 300n, signer)]]);
    assert.equal((await channelState(config)).totalClaimed, 300n);
    const other = kit.randomAccount();
    await rejectsWith(escrow(receiver, "claim", [[await claimRow(config, 400n, 400n, other)]]), "InvalidVoucherSignature");
  });
});

describe("withdraw", () => {
  test("waits the delay, is capped at what is unclaimed, and the receiver can claim meanwhile", async () => {
    const config = channel({ payerAuthorizer: payerAuthorizer.address });
    await deposit(config, 1_000n);
    await escrow(receiver, "claim", [[await claimRow(config, 300n, 300n, payerAuthorizer)]]);
    await rejectsWith(escrow(stranger, "initiateWithdraw", [config, 100n]), "NotPayerOrAuthorizer");
    await rejectsWith(escrow(receiver, "initiateWithdraw", [config, 100n]), "NotPayerOrAuthorizer");
    await rejectsWith(escrow(payer, "initiateWithdraw", [config, 701n]), "WithdrawExceedsAvailable");
    await rejectsWith(escrow(payer, "initiateWithdraw", [config, 0n]), "ZeroAmount");
    await rejectsWith(escrow(payer, "finalizeWithdraw", [config]), "NoPendingWithdrawal");

    const receipt = await escrow(payer, "initiateWithdraw", [config, 700n]);
    const started = (await publicClient.getBlock({ blockNumber: receipt.blockNumber })).timestamp;
    assert.deepEqual(await read("pendingWithdrawals", [idOf(config)]), [700n, Number(started)]);
    await rejectsWith(escrow(payer, "finalizeWithdraw", [config]), "WithdrawDelayNotElapsed");
    // Within the delay the receiver claims what it was owed.
    await escrow(receiver, "claim", [[await claimRow(config, 500n, 500n, payerAuthorizer)]]);
    await chain.testClient.increaseTime({ seconds: DELAY - 10 });
    await chain.testClient.mine({ blocks: 1 });
    await rejectsWith(escrow(payer, "finalizeWithdraw", [config]), "WithdrawDelayNotElapsed");
    await chain.testClient.increaseTime({ seconds: 10 });
    await chain.testClient.mine({ blocks: 1 });

    const payerBefore = await balance(payer.address);
    // The payer authorizer may finalize; the money goes to the payer.
    await escrow(payerAuthorizer, "finalizeWithdraw", [config]);
    assert.equal(await balance(payer.address), payerBefore + 500n, "700 asked, 500 left unclaimed");
    assert.deepEqual(await channelState(config), { balance: 500n, totalClaimed: 500n });
    assert.deepEqual(await read("pendingWithdrawals", [idOf(config)]), [0n, 0]);
    await rejectsWith(escrow(payer, "finalizeWithdraw", [config]), "NoPendingWithdrawal");
    // The claimed part is still the receiver's.
    const receiverBefore = await balance(receiver.address);
    const owed = (await receiverState(config)).totalClaimed - (await receiverState(config)).totalSettled;
    await escrow(stranger, "settle", [receiver.address, asset]);
    assert.equal(await balance(receiver.address), receiverBefore + owed);
  });
});

describe("refund", () => {
  test("the receiver side refunds at most what is unclaimed, and it cancels a pending withdrawal", async () => {
    const config = channel();
    await deposit(config, 1_000n);
    await escrow(receiver, "claim", [[await claimRow(config, 400n, 400n)]]);
    await escrow(payer, "initiateWithdraw", [config, 600n]);
    await rejectsWith(escrow(stranger, "refund", [config, 100n]), "NotReceiverOrAuthorizer");
    await rejectsWith(escrow(payer, "refund", [config, 100n]), "NotReceiverOrAuthorizer");
    const payerBefore = await balance(payer.address);
    await escrow(receiver, "refund", [config, 250n]);
    assert.equal(await balance(payer.address), payerBefore + 250n);
    const [left, since] = await read("pendingWithdrawals", [idOf(config)]);
    assert.equal(left, 350n, "the pending withdrawal shrinks by the refund");
    assert.ok(since > 0);
    await escrow(receiverAuthorizer, "refund", [config, 10_000n]);
    assert.equal(await balance(payer.address), payerBefore + 600n, "capped at balance − claimed");
    assert.deepEqual(await channelState(config), { balance: 400n, totalClaimed: 400n });
    assert.deepEqual(await read("pendingWithdrawals", [idOf(config)]), [0n, 0]);
    assert.equal(await read("refundNonce", [idOf(config)]), 0n, "unsigned refunds use no nonce");
  });

  test("a signed refund needs the current nonce, uses it first, and works once", async () => {
    const config = channel();
    const id = idOf(config);
    await deposit(config, 1_000n);
    const payerBefore = await balance(payer.address);
    await rejectsWith(
      escrow(stranger, "refundWithSignature", [config, 100n, 1n, await authorizeRefund(config, 100n, 1n)]),
      "InvalidRefundNonce",
    );
    await rejectsWith(
      escrow(stranger, "refundWithSignature", [config, 100n, 0n, await authorizeRefund(config, 100n, 0n, stranger)]),
      "InvalidAuthorizerSignature",
    );
    const signature = await authorizeRefund(config, 100n, 0n);
    await rejectsWith(escrow(stranger, "refundWithSignature", [config, 101n, 0n, signature]), "InvalidAuthorizerSignature");
    await escrow(stranger, "refundWithSignature", [config, 100n, 0n, signature]);
    assert.equal(await balance(payer.address), payerBefore + 100n);
    assert.equal(await read("refundNonce", [id]), 1n);
    await rejectsWith(escrow(stranger, "refundWithSignature", [config, 100n, 0n, signature]), "InvalidRefundNonce");
    // Everything else, then a signed refund with nothing left: a no-op that still uses its nonce.
    await escrow(stranger, "refundWithSignature", [config, 900n, 1n, await authorizeRefund(config, 900n, 1n)]);
    await escrow(stranger, "refundWithSignature", [config, 5n, 2n, await authorizeRefund(config, 5n, 2n)]);
    assert.equal(await read("refundNonce", [id]), 3n);
    assert.equal(await balance(payer.address), payerBefore + 1_000n);
    assert.deepEqual(await channelState(config), { balance: 0n, totalClaimed: 0n });
  });

  test("claim then refund in one multicall, as the official facilitator sends a refund", async () => {
    const config = channel();
    await deposit(config, 1_000n);
    const rows = [await claimRow(config, 300n, 300n)];
    const calls = [
      encodeFunctionData({ abi: batch.abi, functionName: "claimWithSignature", args: [rows, await authorizeClaims(rows)] }),
      encodeFunctionData({
        abi: batch.abi,
        functionName: "refundWithSignature",
        args: [config, 700n, 0n, await authorizeRefund(config, 700n, 0n)],
      }),
    ];
    const payerBefore = await balance(payer.address);
    await escrow(stranger, "multicall", [calls]);
    assert.equal(await balance(payer.address), payerBefore + 700n);
    assert.deepEqual(await channelState(config), { balance: 300n, totalClaimed: 300n });
    // One failing call reverts them all, with its reason.
    const config2 = channel();
    await deposit(config2, 100n);
    const bad = [await claimRow(config2, 50n, 60n)];
    const failing = [
      encodeFunctionData({ abi: batch.abi, functionName: "refund", args: [config2, 10n] }),
      encodeFunctionData({ abi: batch.abi, functionName: "claim", args: [bad] }),
    ];
    await rejectsWith(escrow(receiver, "multicall", [failing]), "ClaimExceedsCeiling");
    assert.equal((await channelState(config2)).balance, 100n);
  });
});

describe("the official @x402/evm 2.27 facilitator", () => {
  test("verifies and settles a deposit, vouchers, a claim, a settle and a refund against these contracts", async () => {
    const { BatchSettlementEvmScheme } = require("@x402/evm/batch-settlement/facilitator");
    const multicall3 = loadArtifact("Multicall3");
    // It reads channel state through Multicall3.
    await chain.testClient.setCode({ address: kit.MULTICALL3, bytecode: multicall3.deployedBytecode });
    const client = chain.walletClient(operator).extend(viem.publicActions);
    const signer = sdk.toFacilitatorEvmSigner({ ...client, address: operator.address });
    const facilitator = new BatchSettlementEvmScheme(signer, receiverAuthorizer);
    // A receiver of its own, so that `settle` pays this test's claim alone.
    const payee = kit.randomAccount().address;
    const config = channel({ payerAuthorizer: payer.address, receiver: payee });
    const offer = requirements(config);
    const paid = (payload, accepted = offer) => ({ x402Version: 2, accepted, payload });
    const voucher = async (max, signer = payer) => ({
      type: "voucher",
      channelConfig: config,
      voucher: await sdkClient.signVoucher(signer, idOf(config), String(max), NETWORK),
    });
    const verdict = async (payload) => {
      const answer = await facilitator.verify(paid(payload), offer);
      return answer.isValid ? "valid" : answer.invalidReason;
    };
    const settled = async (payload, accepted = offer) => {
      const answer = await facilitator.settle(paid(payload, accepted), accepted);
      assert.equal(answer.success, true, `${answer.errorReason}: ${answer.errorMessage}`);
      return answer;
    };

    const build = sdkClient.createBatchSettlementEIP3009DepositPayload;
    const { payload: deposit } = await build(payer, 2, offer, config, "1000", "100");
    assert.equal(await verdict(deposit), "valid");
    const afterDeposit = await settled(deposit);
    assert.equal(afterDeposit.amount, "1000");
    assert.equal(afterDeposit.extra.channelState.balance, "1000");
    assert.deepEqual(await channelState(config), { balance: 1_000n, totalClaimed: 0n });

    assert.equal(await verdict(await voucher(300)), "valid");
    assert.equal(await verdict(await voucher(1_001)), "invalid_batch_settlement_evm_cumulative_exceeds_balance");
    assert.equal(await verdict(await voucher(300, stranger)), "invalid_batch_settlement_evm_voucher_signature");

    // What a server sends once it has charged 300: a claim, then a settle.
    const server = { scheme: "batch-settlement", network: NETWORK, asset, amount: "0", payTo: payee, maxTimeoutSeconds: 0, extra: {} };
    const { voucher: latest } = await voucher(300);
    const claims = [{ voucher: { channel: config, maxClaimableAmount: "300" }, signature: latest.signature, totalClaimed: "300" }];
    await settled({ type: "claim", claims }, server);
    assert.deepEqual(await channelState(config), { balance: 1_000n, totalClaimed: 300n });
    assert.equal(await verdict(await voucher(300)), "invalid_batch_settlement_evm_cumulative_below_claimed");
    const payout = await settled({ type: "settle", receiver: payee, token: asset }, server);
    assert.equal(payout.amount, "300", "read from our Settled event");
    assert.equal(await balance(payee), 300n);

    // The cooperative refund of the rest.
    const payerBefore = await balance(payer.address);
    const refund = { type: "refund", channelConfig: config, voucher: latest, amount: "700", refundNonce: "0", claims: [] };
    const refunded = await settled(refund, server);
    assert.equal(refunded.amount, "700");
    assert.equal(await balance(payer.address), payerBefore + 700n);
    assert.deepEqual(await channelState(config), { balance: 300n, totalClaimed: 300n });
    assert.equal(await read("refundNonce", [idOf(config)]), 1n);
  });
});
