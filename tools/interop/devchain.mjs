#!/usr/bin/env node
// Test helper: starts anvil and sets it up the way crates/devnet does (Multicall3 and our
// EIP-3009 token placed with anvil_setCode, token initialized with account 0 as minter,
// payers funded), then prints one JSON line describing the chain and keeps running until
// killed (anvil is stopped with it).
//
// Env (all optional):
//   CHAIN_ID        default 8453
//   TOKEN_ADDRESS   default 0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913 (Base USDC)
//   TOKEN_NAME      default "USD Coin"
//   TOKEN_VERSION   default "2"
//   PAYER_FUNDS     atomic units minted to each payer, default 1000000000 (1000 tokens)
//   ACCOUNTS        number of dev accounts, default 10 (min 3)
//   ANVIL           path to the anvil binary, default tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil
//
// stdout: one line
//   {"rpcUrl","port","anvilPid","chainId","network","token":{address,name,version,decimals},
//    "multicall3","facilitator":{address,privateKey},"payTo":{address,privateKey},
//    "payers":[{address,privateKey},...]}
// Account 0 is the facilitator (minter, pays gas), account 1 the payTo, the rest are payers.

import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { createWalletClient, defineChain, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, "..", "..");

function fail(message) {
  process.stderr.write(`devchain: ${message}\n`);
  process.exit(1);
}

const chainId = Number(process.env.CHAIN_ID ?? "8453");
if (!Number.isSafeInteger(chainId) || chainId <= 0) fail(`bad CHAIN_ID ${process.env.CHAIN_ID}`);
const tokenAddress = process.env.TOKEN_ADDRESS ?? "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const tokenName = process.env.TOKEN_NAME ?? "USD Coin";
const tokenVersion = process.env.TOKEN_VERSION ?? "2";
const payerFunds = BigInt(process.env.PAYER_FUNDS ?? "1000000000");
const accounts = Math.max(3, Number(process.env.ACCOUNTS ?? "10"));
const anvilBin =
  process.env.ANVIL ?? join(repo, "tools/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
const MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11";

const tokenArtifact = JSON.parse(readFileSync(join(repo, "contracts/out/X402Token.json"), "utf8"));
const multicallArtifact = JSON.parse(
  readFileSync(join(repo, "contracts/out/Multicall3.json"), "utf8"),
);

const anvil = spawn(
  anvilBin,
  ["--host", "127.0.0.1", "--port", "0", "--chain-id", String(chainId), "--accounts", String(accounts)],
  { stdio: ["ignore", "pipe", "inherit"] },
);
anvil.on("error", (e) => fail(`cannot start anvil (${anvilBin}): ${e.message}`));
anvil.on("exit", (code, signal) => {
  process.stderr.write(`devchain: anvil exited (code ${code}, signal ${signal})\n`);
  process.exit(1);
});
const stopAnvil = () => {
  anvil.removeAllListeners("exit");
  anvil.kill("SIGTERM");
};
process.on("exit", stopAnvil);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));

// Read the banner: private keys, then "Listening on 127.0.0.1:PORT". Drain the rest.
const { port, keys } = await new Promise((resolve, reject) => {
  const keys = [];
  let inKeys = false;
  let done = false;
  const timer = setTimeout(() => reject(new Error("anvil did not start listening within 30 s")), 30_000);
  createInterface({ input: anvil.stdout }).on("line", (raw) => {
    if (done) return;
    const line = raw.trim();
    if (line.startsWith("Private Keys")) inKeys = true;
    else if (inKeys && line.startsWith("(")) keys.push(line.split(/\s+/)[1]);
    else if (inKeys && line && !line.startsWith("=")) inKeys = false;
    const m = line.match(/^Listening on .*:(\d+)$/);
    if (m) {
      done = true;
      clearTimeout(timer);
      resolve({ port: Number(m[1]), keys });
    }
  });
}).catch((e) => fail(e.message));
if (keys.length < accounts) fail(`anvil printed ${keys.length} private keys, expected ${accounts}`);

const rpcUrl = `http://127.0.0.1:${port}`;
const chain = defineChain({
  id: chainId,
  name: `anvil-${chainId}`,
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [rpcUrl] } },
});
const facilitator = privateKeyToAccount(keys[0]);
const client = createWalletClient({ account: facilitator, chain, transport: http(rpcUrl) }).extend(
  publicActions,
);

async function send(functionName, args) {
  const hash = await client.writeContract({
    address: tokenAddress,
    abi: tokenArtifact.abi,
    functionName,
    args,
  });
  const receipt = await client.waitForTransactionReceipt({ hash });
  if (receipt.status !== "success") throw new Error(`${functionName} reverted (${hash})`);
}

try {
  await client.request({ method: "anvil_setCode", params: [MULTICALL3, multicallArtifact.deployedBytecode] });
  await client.request({ method: "anvil_setCode", params: [tokenAddress, tokenArtifact.deployedBytecode] });
  await send("initialize", [tokenName, tokenVersion, facilitator.address]);
  const describe = (k) => ({ address: privateKeyToAccount(k).address, privateKey: k });
  const payers = keys.slice(2).map(describe);
  for (const p of payers) await send("mint", [p.address, payerFunds]);
  process.stdout.write(
    JSON.stringify({
      rpcUrl,
      port,
      anvilPid: anvil.pid,
      chainId,
      network: `eip155:${chainId}`,
      token: { address: tokenAddress, name: tokenName, version: tokenVersion, decimals: 6 },
      multicall3: MULTICALL3,
      facilitator: describe(keys[0]),
      payTo: describe(keys[1]),
      payers,
    }) + "\n",
  );
} catch (e) {
  fail(`setup failed: ${e?.shortMessage ?? e?.message ?? e}`);
}

// Keep draining anvil's stdout (it logs every call) and stay alive until killed.
anvil.stdout.resume();
setInterval(() => {}, 1 << 30);
