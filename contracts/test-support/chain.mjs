// What the contract tests (contracts/test/) share: viem from tools/node_modules, the committed
// artifacts (contracts/out/*.json), and a local anvil chain with clients for its dev accounts.
//
// It lives outside test/ so that `node --test ../contracts/test/` does not run it as a test file.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
/// The repository's tools/ folder.
export const toolsDir = join(here, "..", "..", "tools");
const require = createRequire(join(toolsDir, "package.json"));

/// viem, as installed in tools/.
export const viem = require("viem");
const { generatePrivateKey, privateKeyToAccount } = require("viem/accounts");

const ANVIL = join(toolsDir, "node_modules", "@foundry-rs", "anvil-linux-amd64", "bin", "anvil");
export const CHAIN_ID = 8453;
export const MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11";

/// The parameters of an EIP-3009 authorization, as its type hash spells them.
export const AUTH_PARAMS = "address from,address to,uint256 value,uint256 validAfter,uint256 validBefore,bytes32 nonce";

/// EIP-712 fields from a Solidity-style parameter list: "address to,uint256 value" gives
/// [{ name: "to", type: "address" }, { name: "value", type: "uint256" }].
export function eip712Fields(params) {
  return params.split(",").map((param) => {
    const [type, name] = param.split(" ");
    return { name, type };
  });
}

/// The EIP-712 typed data of an EIP-3009 authorization `message` for the token at
/// `verifyingContract`; `opts` may change the domain and the primary type, which default to
/// our token's ("USD Coin", "2", CHAIN_ID) and TransferWithAuthorization.
export function authorizationTypedData(verifyingContract, message, opts = {}) {
  const { name = "USD Coin", version = "2", chainId = CHAIN_ID, primaryType = "TransferWithAuthorization" } = opts;
  return {
    domain: { name, version, chainId, verifyingContract },
    types: { [primaryType]: eip712Fields(AUTH_PARAMS) },
    primaryType,
    message,
  };
}

/// The committed artifact `contracts/out/<name>.json`.
export const loadArtifact = (name) => JSON.parse(readFileSync(join(here, "..", "out", `${name}.json`), "utf8"));

/// 32 random bytes: a nonce, a salt, a hash to sign.
export const randomBytes32 = () => viem.keccak256(viem.toHex(`${Math.random()}-${process.hrtime.bigint()}`));

/// A new account with a random key.
export const randomAccount = () => privateKeyToAccount(generatePrivateKey());

/// Starts anvil on a free port. It prints a banner (accounts, private keys)
/// and then `Listening on 127.0.0.1:PORT`; we read the port and the dev keys
/// from it, and want at least `minKeys` of them. (`--silent`/`--quiet` would
/// suppress that line too.) After that we keep draining stdout, where anvil
/// logs every RPC method it serves.
function startAnvil(minKeys) {
  const child = spawn(ANVIL, ["--host", "127.0.0.1", "--port", "0", "--chain-id", String(CHAIN_ID)], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  return new Promise((resolve, reject) => {
    let banner = "";
    let done = false;
    const timer = setTimeout(() => finish(new Error(`anvil did not start in 10 s:\n${banner}`)), 10_000);
    function finish(err, value) {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (err) {
        child.kill("SIGKILL");
        reject(err);
      } else resolve(value);
    }
    child.on("error", finish);
    child.on("exit", (code) => finish(new Error(`anvil exited early (code ${code}):\n${banner}`)));
    child.stderr.on("data", (chunk) => (banner += chunk));
    child.stdout.on("data", (chunk) => {
      if (done) return; // drained and dropped
      banner += chunk;
      const m = banner.match(/Listening on (\d+\.\d+\.\d+\.\d+:\d+)/);
      if (!m) return;
      const keysSection = banner.split("Private Keys")[1] ?? "";
      const keys = [...keysSection.matchAll(/\(\d+\) (0x[0-9a-fA-F]{64})/g)].map((k) => k[1]);
      if (keys.length < minKeys) return finish(new Error(`could not read dev keys from anvil:\n${banner}`));
      finish(null, { child, url: `http://${m[1]}`, keys });
    });
  });
}

function stopAnvil(child) {
  if (!child || child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", resolve);
    child.kill("SIGTERM");
  });
}

/// Starts anvil and connects to it: `publicClient`, `testClient` (anvil's cheat methods), the
/// first `accounts` dev accounts, `walletClient(account)` to send as one of them,
/// `call(from, address, abi, functionName, args)` to send a contract call as one of them and
/// wait for it (simulated first, so a revert rejects with its reason), and `stop()`.
export async function startChain(accounts) {
  const anvil = await startAnvil(accounts);
  const chain = viem.defineChain({
    id: CHAIN_ID,
    name: "anvil",
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [anvil.url] } },
  });
  const transport = viem.http(anvil.url);
  const publicClient = viem.createPublicClient({ chain, transport, pollingInterval: 50 });
  const walletClient = (account) => viem.createWalletClient({ account, chain, transport, pollingInterval: 50 });
  const wallets = new Map();
  async function call(from, address, abi, functionName, args) {
    const { request } = await publicClient.simulateContract({ account: from, address, abi, functionName, args });
    if (!wallets.has(from.address)) wallets.set(from.address, walletClient(from));
    return confirmed(publicClient, await wallets.get(from.address).writeContract(request), functionName);
  }
  return {
    publicClient,
    testClient: viem.createTestClient({ chain, transport, mode: "anvil", pollingInterval: 50 }),
    accounts: anvil.keys.slice(0, accounts).map((k) => privateKeyToAccount(k)),
    walletClient,
    call,
    stop: () => stopAnvil(anvil.child),
  };
}

/// Asserts that `promise` rejects naming the custom error (or revert reason) `name`.
export async function rejectsWith(promise, name) {
  await assert.rejects(promise, (err) => {
    assert.match(`${err.message} ${err.cause?.data?.errorName ?? ""}`, new RegExp(name));
    return true;
  });
}

/// Waits for transaction `hash` on `publicClient`'s chain and asserts that `what` succeeded.
export async function confirmed(publicClient, hash, what = "transaction") {
  const receipt = await publicClient.waitForTransactionReceipt({ hash, pollingInterval: 50 });
  assert.equal(receipt.status, "success", `${what} failed`);
  return receipt;
}

/// Uniswap's Permit2: its canonical `address`, and `deploy(walletClient, publicClient)`, which
/// deploys it (its creation code as scripts/install-permit2.sh installs it) like on every
/// chain, unless it is there: CREATE2 through the deterministic deployer with the canonical
/// salt, sent by `walletClient`.
export const permit2 = { address: "0x000000000022D473030F116dDEE9F6B43aC78BA3", deploy: deployPermit2 };

async function deployPermit2(walletClient, publicClient) {
  const PERMIT2 = permit2.address;
  if ((await publicClient.getCode({ address: PERMIT2 })) !== undefined) return;
  const initcode = readFileSync(join(toolsDir, "permit2", "Permit2.initcode.hex"), "utf8").trim();
  const salt = "0x0000000000000000000000000000000000000000d3af2663da51c10215000000";
  const hash = await walletClient.sendTransaction({
    to: viem.getAddress("0x4e59b44847b379578588920ca78fbf26c0b4956c"),
    data: `${salt}${initcode.slice(2)}`,
  });
  await confirmed(publicClient, hash, "Permit2 deployment");
  assert.ok((await publicClient.getCode({ address: PERMIT2 })).length > 2, "Permit2 has code");
}
