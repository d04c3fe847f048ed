#!/usr/bin/env node
// Golden vectors for the `batch-settlement` scheme, computed by the OFFICIAL SDK (@x402/evm 2.27),
// offline: no chain, no server. For one case on stdin it prints what the SDK makes of it:
//
// - the offer as the official server scheme enhances it (`enhancePaymentRequirements`:
//   receiverAuthorizer, withdrawDelay, minDeposit);
// - the channel config as the official client builds it (`buildChannelConfig`), its id
//   (`computeChannelId`);
// - the voucher for `chargedCumulativeAmount + amount` (`signVoucher`) and its typed-data hash,
//   the refund and claim-batch typed-data hashes (viem `hashTypedData` with the SDK's exported
//   `voucherTypes` / `refundTypes` / `claimBatchTypes` and domain constants), and the ERC-3009
//   deposit nonce for `depositSalt` (`keccak256(abi.encode(channelId, salt))`, which the SDK
//   does not export);
// - payloads exactly as the SDK writes them: the client scheme's `createPaymentPayload` (a
//   voucher on a funded channel; ERC-3009 and Permit2 deposits on a new one), the client's
//   cooperative refund (`refund(url)` against an in-process fake fetch that answers 402 and
//   captures the signed refund), and the server channel manager's `claim`, `settle` and
//   `refund` payloads (captured by a fake facilitator; signed by the receiver authorizer).
//
// Signatures are deterministic (RFC 6979), so everything under `vectors` is reproducible; the
// deposits under `samples` carry a random salt or nonce and a clock-based deadline.
//
// stdin:  {"name", "payerKey", "voucherSignerKey"?, "receiverAuthorizerKey", "salt",
//          "withdrawDelay", "requirements" (an x402 v2 PaymentRequirements, without the
//          batch-settlement extra), "chargedCumulativeAmount", "balance", "totalClaimed",
//          "refundNonce", "refundAmount"?, "depositSalt"}
// stdout: {"input": <stdin>, "vectors": {...}, "samples": {...}} (JSON, one line)
// Exit:   0 when printed; 1 on bad input, or when the SDK throws.

import {
  BatchSettlementEvmScheme as ClientScheme,
  InMemoryClientChannelStorage,
  computeChannelId,
  signVoucher,
} from "@x402/evm/batch-settlement/client";
import {
  BatchSettlementChannelManager,
  BatchSettlementEvmScheme as ServerScheme,
  InMemoryChannelStorage,
} from "@x402/evm/batch-settlement/server";
import {
  BATCH_SETTLEMENT_ADDRESS,
  BATCH_SETTLEMENT_DOMAIN,
  BATCH_SETTLEMENT_SCHEME,
  claimBatchTypes,
  refundTypes,
  voucherTypes,
} from "@x402/evm";
import {
  decodePaymentSignatureHeader,
  encodePaymentRequiredHeader,
} from "@x402/core/http";
import { encodeAbiParameters, getAddress, hashTypedData, keccak256 } from "viem";
import { privateKeyToAccount } from "viem/accounts";
import { describeError, startScript } from "./script.mjs";

const { fail, stdinJson } = startScript("batch-golden");
const input = await stdinJson("one batch-settlement golden case (JSON)");

for (const key of ["payerKey", "receiverAuthorizerKey", "salt", "depositSalt"]) {
  if (!/^0x[0-9a-fA-F]{64}$/.test(input[key] ?? "")) fail(`${key} must be 0x + 64 hex digits`);
}
for (const key of ["chargedCumulativeAmount", "balance", "totalClaimed", "refundNonce"]) {
  if (!/^\d+$/.test(input[key] ?? "")) fail(`${key} must be a decimal string`);
}

try {
  process.stdout.write(`${JSON.stringify(await golden(input))}\n`);
} catch (e) {
  fail(`the SDK failed: ${describeError(e)}`);
}

async function golden(input) {
  const payer = privateKeyToAccount(input.payerKey);
  const voucherSigner = input.voucherSignerKey ? privateKeyToAccount(input.voucherSignerKey) : undefined;
  const authorizer = privateKeyToAccount(input.receiverAuthorizerKey);
  const network = input.requirements.network;
  const chainId = Number(network.split(":")[1]);
  const domain = { ...BATCH_SETTLEMENT_DOMAIN, chainId, verifyingContract: getAddress(BATCH_SETTLEMENT_ADDRESS) };

  const server = new ServerScheme(input.requirements.payTo, {
    receiverAuthorizerSigner: authorizer,
    withdrawDelay: input.withdrawDelay,
  });
  const requirements = await server.enhancePaymentRequirements(
    input.requirements,
    { x402Version: 2, scheme: BATCH_SETTLEMENT_SCHEME, network },
    [],
  );

  const clientOptions = (storage) => ({
    storage,
    salt: input.salt,
    ...(voucherSigner ? { voucherSigner } : {}),
  });
  const client = new ClientScheme(payer, clientOptions(new InMemoryClientChannelStorage()));
  const channelConfig = client.buildChannelConfig(requirements);
  const channelId = computeChannelId(channelConfig, network);
  const channelKey = channelId.toLowerCase();

  // A funded channel: the client signs a voucher for its next request.
  const funded = new InMemoryClientChannelStorage();
  await funded.set(channelKey, {
    chargedCumulativeAmount: input.chargedCumulativeAmount,
    balance: input.balance,
    totalClaimed: input.totalClaimed,
  });
  const voucherPayload = (await new ClientScheme(payer, clientOptions(funded)).createPaymentPayload(2, requirements)).payload;
  const maxClaimableAmount = (BigInt(input.chargedCumulativeAmount) + BigInt(requirements.amount)).toString();
  const voucher = await signVoucher(voucherSigner ?? payer, channelId, maxClaimableAmount, network);
  const voucherDigest = hashTypedData({
    domain,
    types: voucherTypes,
    primaryType: "Voucher",
    message: { channelId, maxClaimableAmount: BigInt(maxClaimableAmount) },
  });

  // New channels: the client deposits (ERC-3009, and Permit2 when the offer asks for it).
  const deposit = (await client.createPaymentPayload(2, requirements)).payload;
  const permit2Requirements = { ...requirements, extra: { ...requirements.extra, assetTransferMethod: "permit2" } };
  const depositPermit2 = (await new ClientScheme(payer, clientOptions(new InMemoryClientChannelStorage()))
    .createPaymentPayload(2, permit2Requirements)).payload;

  // The client's cooperative refund of the funded channel, captured by a fake resource server.
  const refundStorage = new InMemoryClientChannelStorage();
  await refundStorage.set(channelKey, {
    chargedCumulativeAmount: input.chargedCumulativeAmount,
    balance: input.balance,
    totalClaimed: input.totalClaimed,
  });
  const clientRefund = await captureClientRefund(
    new ClientScheme(payer, clientOptions(refundStorage)),
    requirements,
    input.refundAmount,
  );

  // The server's record of the channel after charging `chargedCumulativeAmount`, signed for it.
  const charged = await signVoucher(voucherSigner ?? payer, channelId, input.chargedCumulativeAmount, network);
  const record = {
    channelId: channelKey,
    channelConfig,
    chargedCumulativeAmount: input.chargedCumulativeAmount,
    signedMaxClaimable: input.chargedCumulativeAmount,
    signature: charged.signature,
    balance: input.balance,
    totalClaimed: input.totalClaimed,
    withdrawRequestedAt: 0,
    refundNonce: Number(input.refundNonce),
    lastRequestTimestamp: 0,
  };
  const manage = (operation) => captureManagerSettle(input, authorizer, requirements, record, operation);
  const claim = await manage((m) => m.claim());
  const settle = await manage((m) => m.settle());
  const enrichedRefund = await manage((m) => m.refund());

  const claimBatchDigest = hashTypedData({
    domain,
    types: claimBatchTypes,
    primaryType: "ClaimBatch",
    message: {
      claims: claim.claims.map((c) => ({
        channelId: computeChannelId(c.voucher.channel, network),
        maxClaimableAmount: BigInt(c.voucher.maxClaimableAmount),
        totalClaimed: BigInt(c.totalClaimed),
      })),
    },
  });
  const refundDigest = hashTypedData({
    domain,
    types: refundTypes,
    primaryType: "Refund",
    message: { channelId, nonce: BigInt(enrichedRefund.refundNonce), amount: BigInt(enrichedRefund.amount) },
  });
  const erc3009DepositNonce = keccak256(
    encodeAbiParameters([{ type: "bytes32" }, { type: "uint256" }], [channelId, BigInt(input.depositSalt)]),
  );

  return {
    input,
    vectors: {
      requirements,
      channelConfig,
      channelId,
      voucher: { ...voucher, digest: voucherDigest },
      claimBatchDigest,
      refund: { nonce: enrichedRefund.refundNonce, amount: enrichedRefund.amount, digest: refundDigest },
      erc3009DepositNonce,
      payloads: { voucher: voucherPayload, refund: clientRefund, claim, settle, enrichedRefund },
    },
    samples: { deposit, depositPermit2 },
  };
}

/// The refund payload the client signs for `requirements`, sent to a fake fetch that first
/// answers 402 with the offer and then captures the payment and stops the client.
async function captureClientRefund(client, requirements, amount) {
  const stop = new Error("captured");
  let captured;
  const fetch = async (_url, init) => {
    const signature = init?.headers?.["PAYMENT-SIGNATURE"];
    if (!signature) {
      const header = encodePaymentRequiredHeader({
        x402Version: 2,
        error: "Payment required",
        resource: { url: "http://golden.invalid/paid" },
        accepts: [requirements],
      });
      return new Response(null, { status: 402, headers: { "PAYMENT-REQUIRED": header } });
    }
    captured = decodePaymentSignatureHeader(signature).payload;
    throw stop;
  };
  try {
    await client.refund("http://golden.invalid/paid", { fetch, ...(amount ? { amount } : {}) });
  } catch (e) {
    if (e !== stop) throw e;
  }
  if (!captured) throw new Error("the client sent no refund");
  return captured;
}

/// The payload the server's channel manager sends to its facilitator for `operation`, with
/// the channel `record` stored and `authorizer` signing as the receiver authorizer.
async function captureManagerSettle(input, authorizer, requirements, record, operation) {
  const storage = new InMemoryChannelStorage();
  await storage.updateChannel(record.channelId, () => ({ ...record }));
  const scheme = new ServerScheme(requirements.payTo, {
    receiverAuthorizerSigner: authorizer,
    withdrawDelay: input.withdrawDelay,
    storage,
  });
  let captured;
  const facilitator = {
    async settle(paymentPayload, paymentRequirements) {
      captured = paymentPayload.payload;
      return { success: true, transaction: `0x${"ab".repeat(32)}`, network: paymentRequirements.network };
    },
  };
  const manager = new BatchSettlementChannelManager({
    scheme,
    facilitator,
    receiver: requirements.payTo,
    token: requirements.asset,
    network: requirements.network,
  });
  await operation(manager);
  if (!captured) throw new Error("the channel manager sent nothing");
  return captured;
}
