// Tests for the smart-wallet fixtures (X402Wallet, X402WalletFactory) against a
// real local chain, together with the token they pay with. Run from tools/ with
// `npm run test:contracts`.
//
// One anvil process serves the whole file; every test makes its own wallets.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  MULTICALL3,
  authorizationTypedData,
  confirmed,
  loadArtifact,
  randomAccount,
  randomBytes32,
  startChain,
  viem,
} from "../test-support/chain.mjs";

const { decodeFunctionResult, encodeFunctionData, hashTypedData, serializeErc6492Signature } = viem;

const ERC1271_MAGIC = "0x1626ba7e";
const ERC1271_REFUSED = "0xffffffff";

const token = loadArtifact("X402Token");
const multicall = loadArtifact("Multicall3");
const walletArtifact = loadArtifact("X402Wallet");
const factoryArtifact = loadArtifact("X402WalletFactory");

let chain;
let publicClient;
let sender; // dev account 0: deploys and submits every transaction (the "facilitator")
let payee; // dev account 1
let stranger; // dev account 2
let client;
let tokenAddress;
let factoryAddress;

before(async () => {
  chain = await startChain(3);
  publicClient = chain.publicClient;
  [sender, payee, stranger] = chain.accounts;
  client = chain.walletClient(sender);
  await chain.testClient.setCode({ address: MULTICALL3, bytecode: multicall.deployedBytecode });
  tokenAddress = await deploy(token, ["USD Coin", "2", sender.address]);
  factoryAddress = await deploy(factoryArtifact, []);
});

after(() => chain?.stop());

async function deploy(artifact, args) {
  const hash = await client.deployContract({ abi: artifact.abi, bytecode: artifact.bytecode, args });
  return (await confirmed(publicClient, hash, "deployment")).contractAddress;
}

async function send(address, abi, functionName, args) {
  const hash = await client.writeContract({ address, abi, functionName, args });
  return confirmed(publicClient, hash, `${functionName} transaction`);
}

const read = (address, abi, functionName, args = []) => publicClient.readContract({ address, abi, functionName, args });
const balance = (owner) => read(tokenAddress, token.abi, "balanceOf", [owner]);

/// A fresh owner key and the counterfactual address of its wallet.
async function counterfactualWallet(owner = randomAccount()) {
  const salt = randomBytes32();
  const address = await read(factoryAddress, factoryArtifact.abi, "walletAddress", [owner.address, salt]);
  const createCalldata = encodeFunctionData({
    abi: factoryArtifact.abi,
    functionName: "createWallet",
    args: [owner.address, salt],
  });
  return { owner, salt, address, createCalldata };
}

/// An authorization from `from` to the payee, and its EIP-712 payload.
async function authorization(from, value) {
  const { timestamp } = await publicClient.getBlock();
  const message = {
    from,
    to: payee.address,
    value,
    validAfter: 0n,
    validBefore: timestamp + 600n,
    nonce: randomBytes32(),
  };
  const typedData = authorizationTypedData(tokenAddress, message);
  return { message, typedData, digest: hashTypedData(typedData) };
}

const transferArgs = (m, signature) => [m.from, m.to, m.value, m.validAfter, m.validBefore, m.nonce, signature];

describe("X402WalletFactory", () => {
  test("deploys at the predicted address, once, with the owner; salts and owners separate wallets", async () => {
    const { owner, salt, address } = await counterfactualWallet();
    assert.equal(await publicClient.getCode({ address }), undefined);
    const receipt = await send(factoryAddress, factoryArtifact.abi, "createWallet", [owner.address, salt]);
    assert.equal(receipt.logs.length, 1, "one WalletCreated event");
    assert.ok((await publicClient.getCode({ address })).length > 100);
    assert.equal(await read(address, walletArtifact.abi, "owner"), owner.address);

    // Creating again is a no-op that returns the same address (a raced deployment does not fail).
    const again = await publicClient.simulateContract({
      account: sender,
      address: factoryAddress,
      abi: factoryArtifact.abi,
      functionName: "createWallet",
      args: [owner.address, salt],
    });
    assert.equal(again.result, address);
    const second = await send(factoryAddress, factoryArtifact.abi, "createWallet", [owner.address, salt]);
    assert.equal(second.logs.length, 0);

    const otherSalt = await read(factoryAddress, factoryArtifact.abi, "walletAddress", [owner.address, randomBytes32()]);
    const otherOwner = await read(factoryAddress, factoryArtifact.abi, "walletAddress", [stranger.address, salt]);
    assert.notEqual(otherSalt, address);
    assert.notEqual(otherOwner, address);
  });
});

describe("X402Wallet", () => {
  test("isValidSignature accepts only the owner's signature of that exact hash", async () => {
    const { owner, salt, address } = await counterfactualWallet();
    await send(factoryAddress, factoryArtifact.abi, "createWallet", [owner.address, salt]);
    const hash = randomBytes32();
    const check = (signature, h = hash) => read(address, walletArtifact.abi, "isValidSignature", [h, signature]);
    assert.equal(await check(await owner.sign({ hash })), ERC1271_MAGIC);
    assert.equal(await check(await stranger.sign({ hash })), ERC1271_REFUSED);
    assert.equal(await check(await owner.sign({ hash }), randomBytes32()), ERC1271_REFUSED);
    assert.equal(await check("0x1234"), ERC1271_REFUSED);
  });

  test("a deployed wallet pays through transferWithAuthorization(bytes); a wallet of another owner is refused", async () => {
    const { owner, salt, address } = await counterfactualWallet();
    await send(factoryAddress, factoryArtifact.abi, "createWallet", [owner.address, salt]);
    await send(tokenAddress, token.abi, "mint", [address, 5_000n]);
    const before = await balance(payee.address);

    const paid = await authorization(address, 2_000n);
    await send(tokenAddress, token.abi, "transferWithAuthorization", transferArgs(paid.message, await owner.sign({ hash: paid.digest })));
    assert.equal(await balance(address), 3_000n);
    assert.equal(await balance(payee.address), before + 2_000n);

    // The owner's key signing for a wallet it does not own: the token asks that wallet, which refuses.
    const foreign = await counterfactualWallet(stranger);
    await send(factoryAddress, factoryArtifact.abi, "createWallet", [stranger.address, foreign.salt]);
    await send(tokenAddress, token.abi, "mint", [foreign.address, 1_000n]);
    const refused = await authorization(foreign.address, 1_000n);
    await assert.rejects(
      publicClient.simulateContract({
        account: sender,
        address: tokenAddress,
        abi: token.abi,
        functionName: "transferWithAuthorization",
        args: transferArgs(refused.message, await owner.sign({ hash: refused.digest })),
      }),
      /FiatTokenV2: invalid signature/,
    );
  });

  test("execute is for the owner only", async () => {
    const { salt, address } = await counterfactualWallet(stranger);
    await send(factoryAddress, factoryArtifact.abi, "createWallet", [stranger.address, salt]);
    await send(tokenAddress, token.abi, "mint", [address, 10n]);
    const transfer = encodeFunctionData({ abi: token.abi, functionName: "transfer", args: [payee.address, 10n] });
    await assert.rejects(
      publicClient.simulateContract({
        account: sender,
        address,
        abi: walletArtifact.abi,
        functionName: "execute",
        args: [tokenAddress, 0n, transfer],
      }),
      /X402Wallet: caller is not the owner/,
    );
    await publicClient.simulateContract({
      account: stranger,
      address,
      abi: walletArtifact.abi,
      functionName: "execute",
      args: [tokenAddress, 0n, transfer],
    });
  });
});

describe("ERC-6492 counterfactual payment", () => {
  test("viem validates the wrapped signature; deploy + transfer in one Multicall3 transaction pays", async () => {
    const { owner, address, createCalldata } = await counterfactualWallet();
    await send(tokenAddress, token.abi, "mint", [address, 4_000n]);
    const before = await balance(payee.address);
    const { message, typedData, digest } = await authorization(address, 4_000n);
    const inner = await owner.sign({ hash: digest });
    const wrapped = serializeErc6492Signature({ address: factoryAddress, data: createCalldata, signature: inner });

    // The official clients' library accepts our wallet's counterfactual signature.
    assert.equal(await publicClient.verifyTypedData({ address, signature: wrapped, ...typedData }), true);
    assert.equal(await publicClient.verifyTypedData({ address, signature: serializeErc6492Signature({
      address: factoryAddress,
      data: createCalldata,
      signature: await stranger.sign({ hash: digest }),
    }), ...typedData }), false);

    // Without deployment the token cannot ask the wallet: the inner signature alone is refused.
    const transfer = encodeFunctionData({ abi: token.abi, functionName: "transferWithAuthorization", args: transferArgs(message, inner) });
    await assert.rejects(
      publicClient.call({ account: sender, to: tokenAddress, data: transfer }),
      /FiatTokenV2: invalid signature/,
    );

    const calls = [
      { target: factoryAddress, allowFailure: true, callData: createCalldata },
      { target: tokenAddress, allowFailure: false, callData: transfer },
    ];
    const { result } = await publicClient.simulateContract({
      account: sender,
      address: MULTICALL3,
      abi: multicall.abi,
      functionName: "aggregate3",
      args: [calls],
    });
    assert.deepEqual(result.map((r) => r.success), [true, true]);
    assert.equal(
      decodeFunctionResult({ abi: factoryArtifact.abi, functionName: "createWallet", data: result[0].returnData }),
      address,
    );
    await send(MULTICALL3, multicall.abi, "aggregate3", [calls]);
    assert.equal(await read(address, walletArtifact.abi, "owner"), owner.address);
    assert.equal(await balance(address), 0n);
    assert.equal(await balance(payee.address), before + 4_000n);
  });
});
