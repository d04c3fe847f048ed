#!/usr/bin/env node
// An OFFICIAL x402 v2 paywall (@x402/express middleware over an @x402/core x402ResourceServer
// with the @x402/evm exact server scheme, and optionally the upto one) that sends verify/settle
// to the facilitator at FACILITATOR_URL.
//
// Env:
//   FACILITATOR_URL    required, base URL of the facilitator (POST /verify, POST /settle, GET /supported)
//   PAY_TO             required, 0x address receiving the payments
//   NETWORK            default "eip155:8453"
//   PRICE              default "$0.01". A money string ("$0.01", "0.01") is turned into the
//                      network's default asset by the SDK (USDC for eip155:8453/84532), or a JSON
//                      AssetAmount such as {"amount":"10000","asset":"0x…","extra":{"name":"USD Coin","version":"2"}}
//   FACILITATOR_TOKEN  optional; sent as "Authorization: Bearer <token>" on verify, settle and supported
//   PORT               default 0 (any free port); the server listens on 127.0.0.1
//   UPTO_PRICE         optional; when set, also serves GET /metered with scheme "upto" (the
//                      @x402/evm upto server scheme, Permit2) for at most this price (same forms
//                      as PRICE). The facilitator must then support upto on NETWORK.
//   UPTO_USAGE         optional, only with UPTO_PRICE: what GET /metered reports it used, passed
//                      to the official setSettlementOverrides as {amount}: atomic units ("1234"),
//                      a money string ("$0.001") or a percentage of the maximum ("50%"). Unset:
//                      no override, so the maximum is settled.
//   BATCH_PRICE        optional; when set, also serves GET /batched with scheme "batch-settlement"
//                      (the @x402/evm batch-settlement server scheme, its channels in memory, the
//                      facilitator's advertised receiver authorizer) at this price per request
//                      (same forms as PRICE), and POST /batch/claim-and-settle, which runs the
//                      official channel manager's claimAndSettle() through the facilitator and
//                      answers 200 {"claims":[{vouchers,transaction}],"settle":{transaction}|null}
//                      (500 {"error"} when it throws). The facilitator must then support
//                      batch-settlement on NETWORK.
//   BATCH_MIN_DEPOSIT  optional, only with BATCH_PRICE: the route's extra.minDeposit (atomic
//                      units), the deposit the server asks for; unset, the SDK's 10 x price.
//   BATCH_USAGE        optional, only with BATCH_PRICE: what GET /batched reports it used (the
//                      forms of UPTO_USAGE); unset, the price is charged.
//   SVM_PAY_TO         optional; when set, also serves GET /solana with scheme "exact" on
//                      SVM_NETWORK (the @x402/svm exact server scheme), paid to this base58
//                      owner. PAY_TO may then be left out: only /solana is served.
//   SVM_NETWORK        default "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1" (devnet, which the
//                      local Solana chain poses as)
//   SVM_PRICE          default "$0.001" (the network's USDC), or a JSON AssetAmount
//   SVM_RPC_URL        optional; the server scheme then adds extra.recentBlockhash and
//                      extra.lastValidBlockHeight to the offer, read from this node
//
// Routes: GET /paid -> 200 {"ok":true} behind the paywall (with PAY_TO); with SVM_PAY_TO also
//         GET /solana -> 200 {"ok":true}; with UPTO_PRICE also
//         GET /metered -> 200 {"ok":true,"usage":<UPTO_USAGE or null>}, settled for the usage;
//         with BATCH_PRICE also GET /batched -> 200 {"ok":true,"usage":<BATCH_USAGE or null>}
//         and POST /batch/claim-and-settle.
// stdout: exactly one line "LISTENING <port>", printed after the facilitator's /supported has been
//         fetched and the route checked against it, and the socket is listening.
// stderr: diagnostics, one line per request. Exit 1 on bad env or if the facilitator cannot be
//         reached / does not support exact on NETWORK at startup. Runs until killed.

import express from "express";
import { isAddress } from "viem";
import { paymentMiddlewareFromHTTPServer, setSettlementOverrides } from "@x402/express";
import { HTTPFacilitatorClient, x402HTTPResourceServer, x402ResourceServer } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { UptoEvmScheme } from "@x402/evm/upto/server";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/server";
import { ExactSvmScheme } from "@x402/svm/exact/server";
import { describeError, startScript } from "./script.mjs";

// Library code may console.log; stdout carries only the LISTENING line.
const {
  fail,
  requiredUrl,
  network: readNetwork,
  port: readPort,
  logRequests,
  listen,
} = startScript("express-server");

const facilitatorUrl = requiredUrl("FACILITATOR_URL");
const payTo = process.env.PAY_TO;
const network = readNetwork();
const priceRaw = process.env.PRICE || "$0.01";
const token = process.env.FACILITATOR_TOKEN;
const port = readPort();
const uptoPriceRaw = process.env.UPTO_PRICE;
const uptoUsage = process.env.UPTO_USAGE;
const batchPriceRaw = process.env.BATCH_PRICE;
const batchUsage = process.env.BATCH_USAGE;
const batchMinDeposit = process.env.BATCH_MIN_DEPOSIT;

const svmPayTo = process.env.SVM_PAY_TO;
const svmNetwork = process.env.SVM_NETWORK || "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1";
const svmPriceRaw = process.env.SVM_PRICE || "$0.001";
const svmRpcUrl = process.env.SVM_RPC_URL;
if (svmPayTo !== undefined && !/^[1-9A-HJ-NP-Za-km-z]{32,44}$/.test(svmPayTo)) {
  fail(`SVM_PAY_TO must be a base58 Solana address, got ${svmPayTo}`);
}
if (!/^solana:[1-9A-HJ-NP-Za-km-z]{32}$/.test(svmNetwork)) fail(`SVM_NETWORK must be a CAIP-2 Solana id, got ${svmNetwork}`);
if (!(svmPayTo && payTo === undefined) && (!payTo || !isAddress(payTo, { strict: false }))) {
  fail(`PAY_TO must be a 0x address, got ${payTo}`);
}

if (uptoUsage !== undefined && !uptoPriceRaw) fail("UPTO_USAGE needs UPTO_PRICE");
// The amount forms setSettlementOverrides accepts: atomic units, "$" money, a percentage.
for (const [name, usage] of [["UPTO_USAGE", uptoUsage], ["BATCH_USAGE", batchUsage]]) {
  if (usage !== undefined && !/^(\d+|\$\d+(\.\d+)?|\d+(\.\d{1,2})?%)$/.test(usage)) {
    fail(`${name} must be atomic units ("1234"), money ("$0.001") or a percentage ("50%"), got ${usage}`);
  }
}
if (batchUsage !== undefined && !batchPriceRaw) fail("BATCH_USAGE needs BATCH_PRICE");
if (batchMinDeposit !== undefined && !(batchPriceRaw && /^\d+$/.test(batchMinDeposit))) {
  fail(`BATCH_MIN_DEPOSIT needs BATCH_PRICE and must be atomic units, got ${batchMinDeposit}`);
}

/// The price in the env variable `name` (raw value `raw`): a money string, or JSON AssetAmount.
function readPrice(name, raw) {
  if (!raw.trim().startsWith("{")) return raw;
  try {
    return JSON.parse(raw);
  } catch (e) {
    fail(`${name} looks like JSON but does not parse: ${e.message}`);
  }
}
const price = readPrice("PRICE", priceRaw);

// HTTPFacilitatorClient wants auth headers keyed by facilitator path (a flat object throws).
const facilitatorConfig = { url: facilitatorUrl };
if (token) {
  const auth = { Authorization: `Bearer ${token}` };
  facilitatorConfig.createAuthHeaders = async () => ({ verify: auth, settle: auth, supported: auth });
}

const facilitatorClient = new HTTPFacilitatorClient(facilitatorConfig);
const resourceServer = new x402ResourceServer(facilitatorClient);
const routes = {};
if (payTo !== undefined) {
  resourceServer.register(network, new ExactEvmScheme());
  routes["GET /paid"] = {
    accepts: { scheme: "exact", price, network, payTo },
    description: "x402 interop test resource",
    mimeType: "application/json",
  };
}
if (svmPayTo !== undefined) {
  // The SDK's exact on Solana: the network's USDC, extra.feePayer from /supported.
  resourceServer.register(svmNetwork, new ExactSvmScheme(svmRpcUrl ? { rpcUrl: svmRpcUrl } : undefined));
  routes["GET /solana"] = {
    accepts: { scheme: "exact", price: readPrice("SVM_PRICE", svmPriceRaw), network: svmNetwork, payTo: svmPayTo },
    description: "x402 interop Solana resource",
    mimeType: "application/json",
  };
}
if (uptoPriceRaw) {
  // The upto scheme adds the facilitator address from /supported to the offer.
  resourceServer.register(network, new UptoEvmScheme());
  routes["GET /metered"] = {
    accepts: { scheme: "upto", price: readPrice("UPTO_PRICE", uptoPriceRaw), network, payTo },
    description: "x402 interop metered resource",
    mimeType: "application/json",
  };
}

let batchScheme;
if (batchPriceRaw) {
  // Channels in memory; the receiver authorizer is the one the facilitator advertises.
  batchScheme = new BatchSettlementEvmScheme(payTo);
  resourceServer.register(network, batchScheme);
  routes["GET /batched"] = {
    accepts: {
      scheme: "batch-settlement",
      price: readPrice("BATCH_PRICE", batchPriceRaw),
      network,
      payTo,
      ...(batchMinDeposit ? { extra: { minDeposit: batchMinDeposit } } : {}),
    },
    description: "x402 interop batched resource",
    mimeType: "application/json",
  };
}

let httpServer;
try {
  httpServer = new x402HTTPResourceServer(resourceServer, routes);
  // Fetch /supported now (once) and check the route against it, so a broken facilitator fails
  // here instead of on the first request.
  await httpServer.initialize();
} catch (e) {
  fail(`cannot initialize against facilitator ${facilitatorUrl}: ${describeError(e)}`);
}

const app = express();
logRequests(app, (req) =>
  req.get("payment-signature") ? " [PAYMENT-SIGNATURE]" : req.get("x-payment") ? " [X-PAYMENT]" : "",
);
// Already initialized above, so the middleware must not sync with the facilitator again.
app.use(paymentMiddlewareFromHTTPServer(httpServer, undefined, undefined, false));
app.get("/paid", (_req, res) => {
  res.json({ ok: true });
});
app.get("/solana", (_req, res) => {
  res.json({ ok: true });
});
if (uptoPriceRaw) {
  app.get("/metered", (_req, res) => {
    // The official way to settle less than the maximum: the middleware reads it before settling.
    if (uptoUsage !== undefined) setSettlementOverrides(res, { amount: uptoUsage });
    res.json({ ok: true, usage: uptoUsage ?? null });
  });
}

if (batchScheme) {
  app.get("/batched", (_req, res) => {
    if (batchUsage !== undefined) setSettlementOverrides(res, { amount: batchUsage });
    res.json({ ok: true, usage: batchUsage ?? null });
  });
  // Not a paid route: the official channel manager claims every charged voucher and settles.
  app.post("/batch/claim-and-settle", async (_req, res) => {
    try {
      const manager = batchScheme.createChannelManager(facilitatorClient, network);
      const { claims, settle } = await manager.claimAndSettle();
      res.json({ claims, settle: settle ?? null });
    } catch (e) {
      process.stderr.write(`express-server: claimAndSettle threw: ${describeError(e)}\n`);
      res.status(500).json({ error: describeError(e) });
    }
  });
}

listen(app, port);
