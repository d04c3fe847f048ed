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
//
// Routes: GET /paid -> 200 {"ok":true} behind the paywall; with UPTO_PRICE also
//         GET /metered -> 200 {"ok":true,"usage":<UPTO_USAGE or null>}, settled for the usage.
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

if (!payTo || !isAddress(payTo, { strict: false })) fail(`PAY_TO must be a 0x address, got ${payTo}`);

if (uptoUsage !== undefined && !uptoPriceRaw) fail("UPTO_USAGE needs UPTO_PRICE");
// The amount forms setSettlementOverrides accepts: atomic units, "$" money, a percentage.
if (uptoUsage !== undefined && !/^(\d+|\$\d+(\.\d+)?|\d+(\.\d{1,2})?%)$/.test(uptoUsage)) {
  fail(`UPTO_USAGE must be atomic units ("1234"), money ("$0.001") or a percentage ("50%"), got ${uptoUsage}`);
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

const resourceServer = new x402ResourceServer(new HTTPFacilitatorClient(facilitatorConfig)).register(
  network,
  new ExactEvmScheme(),
);
const routes = {
  "GET /paid": {
    accepts: { scheme: "exact", price, network, payTo },
    description: "x402 interop test resource",
    mimeType: "application/json",
  },
};
if (uptoPriceRaw) {
  // The upto scheme adds the facilitator address from /supported to the offer.
  resourceServer.register(network, new UptoEvmScheme());
  routes["GET /metered"] = {
    accepts: { scheme: "upto", price: readPrice("UPTO_PRICE", uptoPriceRaw), network, payTo },
    description: "x402 interop metered resource",
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
if (uptoPriceRaw) {
  app.get("/metered", (_req, res) => {
    // The official way to settle less than the maximum: the middleware reads it before settling.
    if (uptoUsage !== undefined) setSettlementOverrides(res, { amount: uptoUsage });
    res.json({ ok: true, usage: uptoUsage ?? null });
  });
}

listen(app, port);
