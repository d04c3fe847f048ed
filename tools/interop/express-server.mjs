#!/usr/bin/env node
// An OFFICIAL x402 v2 paywall (@x402/express middleware over an @x402/core x402ResourceServer
// with the @x402/evm exact server scheme) that sends verify/settle to the facilitator at
// FACILITATOR_URL.
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
//
// Route: GET /paid -> 200 {"ok":true} behind the paywall.
// stdout: exactly one line "LISTENING <port>", printed after the facilitator's /supported has been
//         fetched and the route checked against it, and the socket is listening.
// stderr: diagnostics, one line per request. Exit 1 on bad env or if the facilitator cannot be
//         reached / does not support exact on NETWORK at startup. Runs until killed.

import express from "express";
import { isAddress } from "viem";
import { paymentMiddlewareFromHTTPServer } from "@x402/express";
import { HTTPFacilitatorClient, x402HTTPResourceServer, x402ResourceServer } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { describeError, startScript } from "./script.mjs";

// Library code may console.log; stdout carries only the LISTENING line.
const { fail, requiredUrl, network: readNetwork } = startScript("express-server");

const facilitatorUrl = requiredUrl("FACILITATOR_URL");
const payTo = process.env.PAY_TO;
const network = readNetwork();
const priceRaw = process.env.PRICE || "$0.01";
const token = process.env.FACILITATOR_TOKEN;
const port = Number(process.env.PORT || "0");

if (!payTo || !isAddress(payTo, { strict: false })) fail(`PAY_TO must be a 0x address, got ${payTo}`);
if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`bad PORT ${process.env.PORT}`);

let price = priceRaw;
if (priceRaw.trim().startsWith("{")) {
  try {
    price = JSON.parse(priceRaw);
  } catch (e) {
    fail(`PRICE looks like JSON but does not parse: ${e.message}`);
  }
}

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
app.use((req, res, next) => {
  res.on("finish", () => {
    const paid = req.get("payment-signature") ? " [PAYMENT-SIGNATURE]" : req.get("x-payment") ? " [X-PAYMENT]" : "";
    process.stderr.write(`express-server: ${req.method} ${req.originalUrl}${paid} -> ${res.statusCode}\n`);
  });
  next();
});
// Already initialized above, so the middleware must not sync with the facilitator again.
app.use(paymentMiddlewareFromHTTPServer(httpServer, undefined, undefined, false));
app.get("/paid", (_req, res) => {
  res.json({ ok: true });
});

const server = app.listen(port, "127.0.0.1");
server.on("error", (e) => fail(`cannot listen on 127.0.0.1:${port}: ${e.message}`));
server.on("listening", () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}
