// Tests for the committed contract artifacts (contracts/out/*.json) against a
// real local chain. Run from tools/ with `npm run test:contracts`
// (i.e. `node --test ../contracts/test/`).
//
// One anvil process serves the whole file; every test deploys what it needs,
// so the tests do not depend on each other's state.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import {
  AUTH_PARAMS,
  CHAIN_ID,
  MULTICALL3,
  authorizationTypedData,
  confirmed,
  eip712Fields,
  loadArtifact,
  permit2,
  randomAccount,
  randomBytes32,
  startChain,
  viem,
} from "../test-support/chain.mjs";

const {
  decodeFunctionResult,
  encodeFunctionData,
  getAddress,
  hashDomain,
  keccak256,
  parseAbi,
  parseSignature,
  serializeSignature,
  toHex,
} = viem;

const BASE_USDC = "0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913";
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;
const PERMIT_PARAMS = "address owner,address spender,uint256 value,uint256 nonce,uint256 deadline";

const token = loadArtifact("X402Token");
const multicall = loadArtifact("Multicall3");

// ------------------------------------------------------------- fixtures ----

let chain;
let publicClient;
let testClient;
let minter; // dev account 0: deploys, mints, and submits settlements (the "facilitator")
let payer; // dev account 1: signs authorizations, never sends a transaction
let payee; // dev account 2
let stranger; // dev account 3
const wallets = {};

before(async () => {
  chain = await startChain(4);
  ({ publicClient, testClient } = chain);
  [minter, payer, payee, stranger] = chain.accounts;
  for (const account of chain.accounts) {
    wallets[account.address] = chain.walletClient(account);
  }
});

after(() => chain?.stop());

async function send(from, { address, functionName, args, abi = token.abi }) {
  const hash = await wallets[from.address].writeContract({ address, abi, functionName, args });
  return confirmed(publicClient, hash, `${functionName} transaction`);
}

const read = (address, functionName, args = [], abi = token.abi) =>
  publicClient.readContract({ address, abi, functionName, args });

/// Asserts that calling `functionName` as `from` reverts with `reason`.
async function expectRevert(from, { address, functionName, args, abi = token.abi }, reason) {
  await assert.rejects(
    publicClient.simulateContract({ account: from, address, abi, functionName, args }),
    (err) => {
      assert.match(err.message, new RegExp(reason.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")));
      return true;
    },
  );
}

async function deployToken(name = "USD Coin", version = "2") {
  const hash = await wallets[minter.address].deployContract({
    abi: token.abi,
    bytecode: token.bytecode,
    args: [name, version, minter.address],
  });
  return (await confirmed(publicClient, hash, "deployment")).contractAddress;
}

async function now() {
  return (await publicClient.getBlock()).timestamp;
}

/// Signs an EIP-3009 authorization the way an x402 client does.
function signAuthorization(signer, verifyingContract, message, opts = {}) {
  return signer.signTypedData(authorizationTypedData(verifyingContract, message, opts));
}

async function authorization(overrides = {}) {
  const ts = await now();
  return {
    from: payer.address,
    to: payee.address,
    value: 1_000n,
    validAfter: 0n,
    validBefore: ts + 600n,
    nonce: randomBytes32(),
    ...overrides,
  };
}

const authArgs = (a) => [a.from, a.to, a.value, a.validAfter, a.validBefore, a.nonce];

function vrsArgs(a, signature) {
  const { v, r, s } = parseSignature(signature);
  return [...authArgs(a), Number(v), r, s];
}

// ---------------------------------------------------------------- tests ----

describe("X402Token", () => {
  test("metadata, type hashes and the constructor-run initialization", async () => {
    const address = await deployToken();
    assert.equal(await read(address, "name"), "USD Coin");
    assert.equal(await read(address, "version"), "2");
    assert.equal(await read(address, "symbol"), "USDC");
    assert.equal(await read(address, "decimals"), 6);
    assert.equal(await read(address, "minter"), minter.address);
    const typeHash = (s) => keccak256(toHex(s));
    assert.equal(await read(address, "TRANSFER_WITH_AUTHORIZATION_TYPEHASH"), typeHash(`TransferWithAuthorization(${AUTH_PARAMS})`));
    assert.equal(await read(address, "RECEIVE_WITH_AUTHORIZATION_TYPEHASH"), typeHash(`ReceiveWithAuthorization(${AUTH_PARAMS})`));
    assert.equal(
      await read(address, "CANCEL_AUTHORIZATION_TYPEHASH"),
      typeHash("CancelAuthorization(address authorizer,bytes32 nonce)"),
    );
    assert.equal(
      await read(address, "DOMAIN_SEPARATOR"),
      hashDomain({
        domain: { name: "USD Coin", version: "2", chainId: CHAIN_ID, verifyingContract: address },
        types: { EIP712Domain: eip712Fields("string name,string version,uint256 chainId,address verifyingContract") },
      }),
    );
    await expectRevert(minter, { address, functionName: "initialize", args: ["X", "1", stranger.address] }, "X402Token: already initialized");
    await expectRevert(stranger, { address, functionName: "mint", args: [stranger.address, 1n] }, "X402Token: caller is not the minter");
  });

  test("(a) transferWithAuthorization (v,r,s) moves exactly the value; a replay reverts", async () => {
    const address = await deployToken();
    await send(minter, { address, functionName: "mint", args: [payer.address, 5_000_000n] });
    assert.equal(await read(address, "totalSupply"), 5_000_000n);

    const auth = await authorization({ value: 1_234_567n });
    const signature = await signAuthorization(payer, address, auth);
    const receipt = await send(minter, { address, functionName: "transferWithAuthorization", args: vrsArgs(auth, signature) });

    assert.equal(await read(address, "balanceOf", [payer.address]), 5_000_000n - 1_234_567n);
    assert.equal(await read(address, "balanceOf", [payee.address]), 1_234_567n);
    assert.equal(await read(address, "balanceOf", [minter.address]), 0n);
    assert.equal(await read(address, "totalSupply"), 5_000_000n);
    assert.equal(await read(address, "authorizationState", [payer.address, auth.nonce]), true);
    // AuthorizationUsed(authorizer, nonce) then Transfer(from, to, value).
    assert.equal(receipt.logs.length, 2);
    assert.equal(receipt.logs[0].topics[2], auth.nonce);
    assert.equal(BigInt(receipt.logs[1].data), 1_234_567n);

    await expectRevert(
      minter,
      { address, functionName: "transferWithAuthorization", args: vrsArgs(auth, signature) },
      "FiatTokenV2: authorization is used or canceled",
    );
  });

  test("(b) transferWithAuthorization (bytes signature) works", async () => {
    const address = await deployToken();
    await send(minter, { address, functionName: "mint", args: [payer.address, 10_000n] });
    const auth = await authorization({ value: 10_000n });
    const signature = await signAuthorization(payer, address, auth);
    await send(stranger, { address, functionName: "transferWithAuthorization", args: [...authArgs(auth), signature] });
    assert.equal(await read(address, "balanceOf", [payer.address]), 0n);
    assert.equal(await read(address, "balanceOf", [payee.address]), 10_000n);
    await expectRevert(
      stranger,
      { address, functionName: "transferWithAuthorization", args: [...authArgs(auth), signature] },
      "FiatTokenV2: authorization is used or canceled",
    );
  });

  test("(c) expired, not yet valid, bad signatures and insufficient balance revert like USDC", async () => {
    const address = await deployToken();
    await send(minter, { address, functionName: "mint", args: [payer.address, 1_000_000n] });
    const ts = await now();
    const call = (auth, signature) => ({ address, functionName: "transferWithAuthorization", args: [...authArgs(auth), signature] });

    const expired = await authorization({ validBefore: ts - 60n });
    await expectRevert(minter, call(expired, await signAuthorization(payer, address, expired)), "FiatTokenV2: authorization is expired");

    const early = await authorization({ validAfter: ts + 3600n, validBefore: ts + 7200n });
    await expectRevert(minter, call(early, await signAuthorization(payer, address, early)), "FiatTokenV2: authorization is not yet valid");

    const auth = await authorization();
    const invalid = "FiatTokenV2: invalid signature";
    await expectRevert(minter, call(auth, await signAuthorization(stranger, address, auth)), invalid);
    await expectRevert(minter, call(auth, await signAuthorization(payer, address, auth, { name: "USDC" })), invalid);
    await expectRevert(minter, call(auth, await signAuthorization(payer, address, auth, { version: "1" })), invalid);
    await expectRevert(minter, call(auth, await signAuthorization(payer, address, auth, { chainId: 84532 })), invalid);
    const otherToken = await deployToken();
    await expectRevert(minter, call(auth, await signAuthorization(payer, otherToken, auth)), invalid);
    // A receive-typed signature is not a transfer authorization.
    await expectRevert(minter, call(auth, await signAuthorization(payer, address, auth, { primaryType: "ReceiveWithAuthorization" })), invalid);
    // Tampered amount.
    const good = await signAuthorization(payer, address, auth);
    await expectRevert(minter, call({ ...auth, value: auth.value + 1n }, good), invalid);

    // Malformed signatures: the high-s twin of a valid signature, v = 0/1, wrong length.
    const { r, s, yParity } = parseSignature(good);
    const highS = serializeSignature({ r, s: toHex(SECP256K1_N - BigInt(s), { size: 32 }), yParity: 1 - yParity });
    await expectRevert(minter, call(auth, highS), invalid);
    const rawV = `${good.slice(0, 130)}${toHex(yParity, { size: 1 }).slice(2)}`;
    await expectRevert(minter, call(auth, rawV), invalid);
    await expectRevert(minter, call(auth, good.slice(0, 128)), invalid);
    await expectRevert(minter, call(auth, "0x"), invalid);
    // ... while the well-formed one still works.
    await send(minter, call(auth, good));

    const tooMuch = await authorization({ value: 2_000_000n });
    await expectRevert(minter, call(tooMuch, await signAuthorization(payer, address, tooMuch)), "ERC20: transfer amount exceeds balance");
  });

  test("(c') an address with code is checked with ERC-1271, not ECDSA", async () => {
    const address = await deployToken();
    // A key whose address we turn into a contract: its ECDSA signature must no
    // longer count, since the code (no isValidSignature) decides.
    const wallet = randomAccount();
    await testClient.setCode({ address: wallet.address, bytecode: multicall.deployedBytecode });
    await send(minter, { address, functionName: "mint", args: [wallet.address, 100n] });
    const auth = await authorization({ from: wallet.address, value: 100n });
    await expectRevert(
      minter,
      { address, functionName: "transferWithAuthorization", args: [...authArgs(auth), await signAuthorization(wallet, address, auth)] },
      "FiatTokenV2: invalid signature",
    );
    // A wallet that answers the ERC-1271 magic value 0x1626ba7e to any call:
    // PUSH4 1626ba7e PUSH1 e0 SHL PUSH0 MSTORE PUSH1 20 PUSH0 RETURN
    await testClient.setCode({ address: wallet.address, bytecode: "0x631626ba7e60e01b5f5260205ff3" });
    await send(minter, { address, functionName: "transferWithAuthorization", args: [...authArgs(auth), "0x1234"] });
    assert.equal(await read(address, "balanceOf", [payee.address]), 100n);
  });

  test("(d) cancelAuthorization burns the nonce; receiveWithAuthorization only by the payee", async () => {
    const address = await deployToken();
    await send(minter, { address, functionName: "mint", args: [payer.address, 3_000n] });

    // Cancel (v,r,s overload, submitted by a third party), then try to use it.
    const auth = await authorization();
    const transferSig = await signAuthorization(payer, address, auth);
    const cancelSig = await payer.signTypedData({
      domain: { name: "USD Coin", version: "2", chainId: CHAIN_ID, verifyingContract: address },
      types: { CancelAuthorization: eip712Fields("address authorizer,bytes32 nonce") },
      primaryType: "CancelAuthorization",
      message: { authorizer: payer.address, nonce: auth.nonce },
    });
    const { v, r, s } = parseSignature(cancelSig);
    await expectRevert(
      stranger,
      { address, functionName: "cancelAuthorization", args: [stranger.address, auth.nonce, cancelSig] },
      "FiatTokenV2: invalid signature",
    );
    await send(stranger, { address, functionName: "cancelAuthorization", args: [payer.address, auth.nonce, Number(v), r, s] });
    assert.equal(await read(address, "authorizationState", [payer.address, auth.nonce]), true);
    await expectRevert(
      minter,
      { address, functionName: "transferWithAuthorization", args: [...authArgs(auth), transferSig] },
      "FiatTokenV2: authorization is used or canceled",
    );
    await expectRevert(
      stranger,
      { address, functionName: "cancelAuthorization", args: [payer.address, auth.nonce, cancelSig] },
      "FiatTokenV2: authorization is used or canceled",
    );

    // receiveWithAuthorization: a non-payee is refused, the payee succeeds.
    const recv = await authorization({ value: 3_000n });
    const recvSig = await signAuthorization(payer, address, recv, { primaryType: "ReceiveWithAuthorization" });
    await expectRevert(
      minter,
      { address, functionName: "receiveWithAuthorization", args: vrsArgs(recv, recvSig) },
      "FiatTokenV2: caller must be the payee",
    );
    await expectRevert(
      payee,
      { address, functionName: "receiveWithAuthorization", args: [...authArgs(recv), await signAuthorization(payer, address, recv)] },
      "FiatTokenV2: invalid signature",
    );
    await send(payee, { address, functionName: "receiveWithAuthorization", args: vrsArgs(recv, recvSig) });
    assert.equal(await read(address, "balanceOf", [payee.address]), 3_000n);
    assert.equal(await read(address, "balanceOf", [payer.address]), 0n);
  });

  test("(g) EIP-2612 permit sets an allowance by signature, once per nonce, until its deadline", async () => {
    const address = await deployToken();
    await send(minter, { address, functionName: "mint", args: [payer.address, 5_000n] });
    assert.equal(
      await read(address, "PERMIT_TYPEHASH"),
      keccak256(toHex(`Permit(${PERMIT_PARAMS})`)),
    );
    const signPermit = (signer, message, name = "USD Coin") =>
      signer.signTypedData({
        domain: { name, version: "2", chainId: CHAIN_ID, verifyingContract: address },
        types: { Permit: eip712Fields(PERMIT_PARAMS) },
        primaryType: "Permit",
        message,
      });
    const ts = await now();
    const message = { owner: payer.address, spender: stranger.address, value: 3_000n, nonce: 0n, deadline: ts + 600n };
    const signature = await signPermit(payer, message);
    const { v, r, s } = parseSignature(signature);
    const vrs = [payer.address, stranger.address, 3_000n, message.deadline, Number(v), r, s];
    assert.equal(await read(address, "nonces", [payer.address]), 0n);

    // Signed by someone else, for another domain, or for more: refused.
    const invalid = "EIP2612: invalid signature";
    const byStranger = parseSignature(await signPermit(stranger, message));
    await expectRevert(minter, { address, functionName: "permit", args: [...vrs.slice(0, 4), Number(byStranger.v), byStranger.r, byStranger.s] }, invalid);
    await expectRevert(minter, { address, functionName: "permit", args: [payer.address, stranger.address, 3_001n, message.deadline, signature] }, invalid);
    await expectRevert(minter, { address, functionName: "permit", args: [payer.address, stranger.address, 3_000n, message.deadline, await signPermit(payer, message, "USDC")] }, invalid);
    // Expired.
    const late = { ...message, deadline: ts - 1n };
    await expectRevert(minter, { address, functionName: "permit", args: [payer.address, stranger.address, 3_000n, late.deadline, await signPermit(payer, late)] }, "FiatTokenV2: permit is expired");

    // Anyone may submit the owner's permit; the allowance is then spendable.
    const receipt = await send(minter, { address, functionName: "permit", args: vrs });
    assert.equal(receipt.logs.length, 1); // Approval(owner, spender, value)
    assert.equal(await read(address, "allowance", [payer.address, stranger.address]), 3_000n);
    assert.equal(await read(address, "nonces", [payer.address]), 1n);
    // The same permit again: its nonce is spent.
    await expectRevert(minter, { address, functionName: "permit", args: vrs }, invalid);
    await send(stranger, { address, functionName: "transferFrom", args: [payer.address, payee.address, 3_000n] });
    assert.equal(await read(address, "balanceOf", [payee.address]), 3_000n);

    // The bytes form with the next nonce, a deadline that never expires.
    const forever = { ...message, value: 7n, nonce: 1n, deadline: 2n ** 256n - 1n };
    await send(payee, { address, functionName: "permit", args: [payer.address, stranger.address, 7n, forever.deadline, await signPermit(payer, forever)] });
    assert.equal(await read(address, "allowance", [payer.address, stranger.address]), 7n);
    assert.equal(await read(address, "nonces", [payer.address]), 2n);
  });

  test("(g') a smart-wallet owner permits through ERC-1271", async () => {
    const address = await deployToken();
    const wallet = randomAccount().address;
    await testClient.setCode({ address: wallet, bytecode: "0x631626ba7e60e01b5f5260205ff3" });
    await send(minter, { address, functionName: "permit", args: [wallet, stranger.address, 42n, 2n ** 256n - 1n, "0xabcd"] });
    assert.equal(await read(address, "allowance", [wallet, stranger.address]), 42n);
    assert.equal(await read(address, "nonces", [wallet]), 1n);
  });

  test("(h) Permit2 moves the token by a signed transfer, after a gasless EIP-2612 approval", async () => {
    // Permit2 at its canonical address, deployed as on every chain.
    const PERMIT2 = permit2.address;
    await permit2.deploy(wallets[minter.address], publicClient);
    const permit2Abi = parseAbi([
      "function permitTransferFrom(((address token, uint256 amount) permitted, uint256 nonce, uint256 deadline) permit, (address to, uint256 requestedAmount) transferDetails, address owner, bytes signature)",
    ]);

    const address = await deployToken();
    await send(minter, { address, functionName: "mint", args: [payer.address, 1_000n] });
    const ts = await now();
    // The payer holds no ETH it spends: its allowance to Permit2 comes from a signed permit.
    const approval = { owner: payer.address, spender: PERMIT2, value: 2n ** 256n - 1n, nonce: 0n, deadline: ts + 600n };
    const approvalSig = await payer.signTypedData({
      domain: { name: "USD Coin", version: "2", chainId: CHAIN_ID, verifyingContract: address },
      types: { Permit: eip712Fields(PERMIT_PARAMS) },
      primaryType: "Permit",
      message: approval,
    });
    await send(minter, { address, functionName: "permit", args: [payer.address, PERMIT2, approval.value, approval.deadline, approvalSig] });

    // A Permit2 signature transfer to the payee, submitted by the spender it names.
    const permit = { permitted: { token: address, amount: 600n }, spender: stranger.address, nonce: 7n, deadline: ts + 600n };
    const signature = await payer.signTypedData({
      domain: { name: "Permit2", chainId: CHAIN_ID, verifyingContract: PERMIT2 },
      types: {
        PermitTransferFrom: eip712Fields("TokenPermissions permitted,address spender,uint256 nonce,uint256 deadline"),
        TokenPermissions: eip712Fields("address token,uint256 amount"),
      },
      primaryType: "PermitTransferFrom",
      message: permit,
    });
    const call = {
      address: PERMIT2,
      abi: permit2Abi,
      functionName: "permitTransferFrom",
      args: [{ permitted: permit.permitted, nonce: permit.nonce, deadline: permit.deadline }, { to: payee.address, requestedAmount: 450n }, payer.address, signature],
    };
    // Only the spender it names may use it.
    await assert.rejects(publicClient.simulateContract({ account: minter, ...call }));
    await send(stranger, call);
    assert.equal(await read(address, "balanceOf", [payee.address]), 450n);
    assert.equal(await read(address, "balanceOf", [payer.address]), 550n);
    // Its nonce is spent.
    await assert.rejects(publicClient.simulateContract({ account: stranger, ...call }));
  });

  test("ERC-20 transfer, approve and transferFrom", async () => {
    const address = await deployToken();
    await send(minter, { address, functionName: "mint", args: [payer.address, 500n] });
    await send(payer, { address, functionName: "transfer", args: [payee.address, 100n] });
    await send(payer, { address, functionName: "approve", args: [stranger.address, 150n] });
    assert.equal(await read(address, "allowance", [payer.address, stranger.address]), 150n);
    await expectRevert(stranger, { address, functionName: "transferFrom", args: [payer.address, stranger.address, 151n] }, "ERC20: transfer amount exceeds allowance");
    await send(stranger, { address, functionName: "transferFrom", args: [payer.address, stranger.address, 150n] });
    assert.equal(await read(address, "allowance", [payer.address, stranger.address]), 0n);
    assert.equal(await read(address, "balanceOf", [payer.address]), 250n);
    assert.equal(await read(address, "balanceOf", [stranger.address]), 150n);
    await expectRevert(payer, { address, functionName: "transfer", args: [payee.address, 251n] }, "ERC20: transfer amount exceeds balance");
    await expectRevert(payer, { address, functionName: "transfer", args: ["0x0000000000000000000000000000000000000000", 1n] }, "ERC20: transfer to the zero address");
    await expectRevert(payer, { address, functionName: "approve", args: ["0x0000000000000000000000000000000000000000", 1n] }, "ERC20: approve to the zero address");
  });
});

describe("runtime code placed with anvil_setCode", () => {
  test("(e) X402Token at the Base USDC address, initialized afterwards", async () => {
    await testClient.setCode({ address: BASE_USDC, bytecode: token.deployedBytecode });
    assert.equal(await read(BASE_USDC, "name"), "");
    await send(minter, { address: BASE_USDC, functionName: "initialize", args: ["USD Coin", "2", minter.address] });
    await expectRevert(minter, { address: BASE_USDC, functionName: "initialize", args: ["USD Coin", "2", minter.address] }, "X402Token: already initialized");
    assert.equal(await read(BASE_USDC, "name"), "USD Coin");
    assert.equal(await read(BASE_USDC, "version"), "2");
    assert.equal(await read(BASE_USDC, "decimals"), 6);

    await send(minter, { address: BASE_USDC, functionName: "mint", args: [payer.address, 1_000_000n] });
    const auth = await authorization({ value: 10_000n });
    const signature = await signAuthorization(payer, getAddress(BASE_USDC), auth, { chainId: 8453 });
    await send(minter, { address: BASE_USDC, functionName: "transferWithAuthorization", args: vrsArgs(auth, signature) });
    assert.equal(await read(BASE_USDC, "balanceOf", [payer.address]), 990_000n);
    assert.equal(await read(BASE_USDC, "balanceOf", [payee.address]), 10_000n);
    assert.equal(await read(BASE_USDC, "authorizationState", [payer.address, auth.nonce]), true);
  });

  test("(f) Multicall3 at its canonical address answers tryAggregate / aggregate / aggregate3", async () => {
    const address = await deployToken();
    await testClient.setCode({ address: MULTICALL3, bytecode: multicall.deployedBytecode });
    await send(minter, { address, functionName: "mint", args: [payer.address, 777n] });
    const used = await authorization({ value: 7n });
    await send(minter, {
      address,
      functionName: "transferWithAuthorization",
      args: [...authArgs(used), await signAuthorization(payer, address, used)],
    });

    const sub = [
      ["balanceOf", [payer.address]],
      ["name", []],
      ["authorizationState", [payer.address, used.nonce]],
      ["authorizationState", [payer.address, randomBytes32()]],
      ["mint", [payer.address, 1n]], // Multicall3 is not the minter: fails
    ];
    const calls = sub.map(([functionName, args]) => ({
      target: address,
      callData: encodeFunctionData({ abi: token.abi, functionName, args }),
    }));
    const { result } = await publicClient.simulateContract({
      address: MULTICALL3,
      abi: multicall.abi,
      functionName: "tryAggregate",
      args: [false, calls],
    });
    assert.equal(result.length, sub.length);
    const decoded = result.slice(0, 4).map((res, i) => {
      assert.equal(res.success, true, `sub-call ${sub[i][0]} should succeed`);
      return decodeFunctionResult({ abi: token.abi, functionName: sub[i][0], data: res.returnData });
    });
    assert.deepEqual(decoded, [770n, "USD Coin", true, false]);
    assert.equal(result[4].success, false);
    // The failing sub-call's revert data is Error(string) with the token's reason.
    assert.equal(result[4].returnData.slice(0, 10), "0x08c379a0");
    assert.match(Buffer.from(result[4].returnData.slice(2), "hex").toString("latin1"), /caller is not the minter/);

    await expectRevert(minter, { address: MULTICALL3, abi: multicall.abi, functionName: "tryAggregate", args: [true, calls] }, "Multicall3: call failed");

    const { result: agg } = await publicClient.simulateContract({
      address: MULTICALL3,
      abi: multicall.abi,
      functionName: "aggregate",
      args: [calls.slice(0, 2)],
    });
    // viem caches the block number for 4 s by default; ask the node now.
    assert.equal(agg[0], await publicClient.getBlockNumber({ cacheTime: 0 }));
    assert.equal(decodeFunctionResult({ abi: token.abi, functionName: "name", data: agg[1][1] }), "USD Coin");

    const { result: agg3 } = await publicClient.simulateContract({
      address: MULTICALL3,
      abi: multicall.abi,
      functionName: "aggregate3",
      args: [calls.map((c, i) => ({ target: c.target, allowFailure: i === 4, callData: c.callData }))],
    });
    assert.deepEqual(agg3.map((r) => r.success), [true, true, true, true, false]);

    assert.equal(await read(MULTICALL3, "getChainId", [], multicall.abi), BigInt(CHAIN_ID));
    assert.equal(await read(MULTICALL3, "getBlockNumber", [], multicall.abi), await publicClient.getBlockNumber({ cacheTime: 0 }));
    assert.equal(await read(MULTICALL3, "getCurrentBlockTimestamp", [], multicall.abi) > 0n, true);
    assert.equal(await read(MULTICALL3, "getEthBalance", [payer.address], multicall.abi), await publicClient.getBalance({ address: payer.address }));
  });
});
