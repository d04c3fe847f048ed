#!/usr/bin/env node
// Compiles the Solidity sources in contracts/src with the solc-js package
// pinned in tools/package.json and writes one JSON artifact per contract to
// contracts/out. The artifacts are committed so that the Rust tests need no
// compiler; `--check` recompiles and fails if they are stale.
//
//   node contracts/build.mjs           # (re)write contracts/out/*.json
//   node contracts/build.mjs --check   # write nothing; exit 1 if out of date
//
// Reproducibility: source unit names are bare file names (no absolute paths)
// and the CBOR metadata trailer is switched off, so the bytecode depends only
// on the source text and the settings below.

import { createHash } from "node:crypto";
import { readFileSync, readdirSync, writeFileSync, mkdirSync, existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const srcDir = join(here, "src");
const outDir = join(here, "out");
const require = createRequire(join(here, "..", "tools", "package.json"));

const EXPECTED_SOLC = "0.8.37";
// Each contract and the source file it is in (named after it, unless it shares one).
const SOURCE_OF = {
  X402Token: "X402Token.sol",
  Multicall3: "Multicall3.sol",
  X402Wallet: "X402Wallet.sol",
  GasSensitiveWallet: "GasSensitiveWallet.sol",
  X402WalletFactory: "X402WalletFactory.sol",
  X402ExactPermit2Proxy: "X402Permit2Proxies.sol",
  X402UptoPermit2Proxy: "X402Permit2Proxies.sol",
  PlainToken: "PlainToken.sol",
  X402BatchSettlement: "X402BatchSettlement.sol",
  ERC3009DepositCollector: "X402DepositCollectors.sol",
  Permit2DepositCollector: "X402DepositCollectors.sol",
};
const CONTRACTS = Object.keys(SOURCE_OF);

function fail(message) {
  console.error(`build.mjs: ${message}`);
  process.exit(1);
}

let solc;
try {
  solc = require("solc");
} catch (err) {
  fail(`cannot load solc from tools/node_modules (run \`npm install\` in tools/): ${err.message}`);
}
const solcVersion = solc.version().split("+")[0];
if (solcVersion !== EXPECTED_SOLC) {
  fail(`expected solc-js ${EXPECTED_SOLC}, found ${solc.version()}`);
}

const checkOnly = process.argv.includes("--check");
const unknown = process.argv.slice(2).filter((a) => a !== "--check");
if (unknown.length > 0) fail(`unknown argument(s): ${unknown.join(" ")}`);

// Read every source once: the same bytes feed both the compiler and the hash. Every file in
// src/ is compiled, so that a contract may import one that holds only a library.
const sources = {};
for (const file of readdirSync(srcDir).filter((f) => f.endsWith(".sol")).sort()) {
  sources[file] = { content: readFileSync(join(srcDir, file)) };
}
const sourceHashes = {};
for (const name of CONTRACTS) {
  const bytes = sources[SOURCE_OF[name]]?.content;
  if (!bytes) fail(`contracts/src/${SOURCE_OF[name]} (of ${name}) is missing`);
  sourceHashes[name] = createHash("sha256").update(bytes).digest("hex");
}
for (const file of Object.keys(sources)) sources[file].content = sources[file].content.toString("utf8");

const input = {
  language: "Solidity",
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: "cancun",
    metadata: { bytecodeHash: "none", appendCBOR: false },
    outputSelection: {
      "*": {
        "*": [
          "abi",
          "evm.bytecode.object",
          "evm.bytecode.linkReferences",
          "evm.deployedBytecode.object",
          "evm.deployedBytecode.immutableReferences",
        ],
      },
    },
  },
};

const output = JSON.parse(solc.compile(JSON.stringify(input)));

let errorCount = 0;
for (const diag of output.errors ?? []) {
  const text = diag.formattedMessage ?? diag.message;
  if (diag.severity === "error") {
    errorCount++;
    console.error(text);
  } else {
    console.warn(text);
  }
}
if (errorCount > 0) fail(`compilation failed with ${errorCount} error(s)`);

// Build the artifacts in memory first.
const artifacts = {};
for (const name of CONTRACTS) {
  const compiled = output.contracts?.[SOURCE_OF[name]]?.[name];
  if (!compiled) fail(`no output for contract ${name} in ${SOURCE_OF[name]}`);
  // The runtime code is placed with anvil_setCode, where no constructor runs:
  // immutables would be left as zeros, so refuse to produce such code.
  const immutables = compiled.evm.deployedBytecode.immutableReferences ?? {};
  if (Object.keys(immutables).length > 0) fail(`${name} uses immutables; its runtime code must not`);
  if (Object.keys(compiled.evm.bytecode.linkReferences ?? {}).length > 0) fail(`${name} needs library linking`);
  artifacts[name] = {
    contractName: name,
    compiler: `solc-js ${solcVersion}`,
    sourceSha256: sourceHashes[name],
    abi: compiled.abi,
    bytecode: `0x${compiled.evm.bytecode.object}`,
    deployedBytecode: `0x${compiled.evm.deployedBytecode.object}`,
  };
}

const render = (artifact) => `${JSON.stringify(artifact, null, 2)}\n`;

if (checkOnly) {
  const stale = [];
  for (const name of CONTRACTS) {
    const path = join(outDir, `${name}.json`);
    if (!existsSync(path)) {
      stale.push(`${name}: contracts/out/${name}.json is missing`);
      continue;
    }
    let committed;
    try {
      committed = JSON.parse(readFileSync(path, "utf8"));
    } catch (err) {
      stale.push(`${name}: contracts/out/${name}.json is not valid JSON (${err.message})`);
      continue;
    }
    const fresh = artifacts[name];
    const differing = ["sourceSha256", "abi", "bytecode", "deployedBytecode"].filter(
      (key) => JSON.stringify(committed[key]) !== JSON.stringify(fresh[key]),
    );
    if (differing.length > 0) stale.push(`${name}: ${differing.join(", ")} differ from a fresh compile`);
  }
  if (stale.length > 0) {
    for (const line of stale) console.error(`  ${line}`);
    fail("committed contract artifacts are out of date; run `npm run build:contracts` in tools/ and commit contracts/out");
  }
  console.log(`contract artifacts are up to date (${CONTRACTS.join(", ")}; solc-js ${solcVersion})`);
} else {
  mkdirSync(outDir, { recursive: true });
  for (const name of CONTRACTS) {
    writeFileSync(join(outDir, `${name}.json`), render(artifacts[name]));
    const runtimeBytes = (artifacts[name].deployedBytecode.length - 2) / 2;
    console.log(`wrote contracts/out/${name}.json (runtime ${runtimeBytes} bytes)`);
  }
}
