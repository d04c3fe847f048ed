// The front's own wire code (wire.mjs) agrees with @solana/kit: base58, associated token
// addresses (off-curve search), and transactions and messages both ways.

import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import {
  address,
  getAddressEncoder,
  getBase58Codec,
  getCompiledTransactionMessageDecoder,
  getProgramDerivedAddress,
  getTransactionDecoder,
} from "@solana/kit";
import {
  associatedTokenAddress,
  base58Decode,
  base58Encode,
  compileLegacyMessage,
  mintToChecked,
  parseTransaction,
  randomKeypair,
  signTransaction,
  transferChecked,
  verifySignature,
} from "../wire.mjs";

const TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const TOKEN_2022 = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";
const ATA = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL";

test("base58 agrees with kit, leading zeros included", () => {
  const kit = getBase58Codec();
  for (const bytes of [new Uint8Array(0), Uint8Array.of(0), Uint8Array.of(0, 0, 1), ...Array.from({ length: 50 }, (_, i) => Uint8Array.from([...new Array(i % 3).fill(0), ...randomBytes(1 + (i % 64))]))]) {
    const text = base58Encode(bytes);
    assert.equal(text, kit.decode(bytes));
    assert.deepEqual(base58Decode(text), Uint8Array.from(kit.encode(text)));
  }
  assert.throws(() => base58Decode("0OIl"), /invalid base58/);
});

test("associated token addresses agree with kit's program-derived addresses", async () => {
  const enc = getAddressEncoder();
  for (let i = 0; i < 40; i++) {
    const owner = randomKeypair().address;
    const mint = randomKeypair().address;
    const program = i % 2 ? TOKEN : TOKEN_2022;
    const [pda] = await getProgramDerivedAddress({ programAddress: address(ATA), seeds: [enc.encode(address(owner)), enc.encode(address(program)), enc.encode(address(mint))] });
    assert.equal(associatedTokenAddress(owner, mint, program), pda);
  }
});

test("a transaction compiled and signed here decodes in kit, and parses back here", () => {
  const [payer, authority, mint, source, destination] = [randomKeypair(), randomKeypair(), randomKeypair(), randomKeypair(), randomKeypair()];
  const blockhash = base58Encode(randomBytes(32));
  const { messageBytes, signers } = compileLegacyMessage({
    payer: payer.address,
    recentBlockhash: blockhash,
    instructions: [
      mintToChecked({ mint: mint.address, destination: destination.address, authority: authority.address, amount: 5n, decimals: 6 }),
      transferChecked({ source: source.address, mint: mint.address, destination: destination.address, authority: authority.address, amount: 7n, decimals: 6 }),
    ],
  });
  assert.deepEqual(signers, [payer.address, authority.address]);
  const wire = signTransaction(messageBytes, signers, [authority, payer]);

  const kitTx = getTransactionDecoder().decode(wire);
  assert.deepEqual(Object.keys(kitTx.signatures), [payer.address, authority.address]);
  const compiled = getCompiledTransactionMessageDecoder().decode(kitTx.messageBytes);
  assert.equal(compiled.lifetimeToken, blockhash);
  assert.deepEqual(compiled.header, { numSignerAccounts: 2, numReadonlySignerAccounts: 1, numReadonlyNonSignerAccounts: 1 }, "the mint is written by MintToChecked; only the Token program is read-only");

  const parsed = parseTransaction(wire);
  assert.deepEqual(parsed.message.accountKeys, compiled.staticAccounts);
  assert.equal(parsed.message.recentBlockhash, blockhash);
  assert.equal(parsed.message.instructions.length, 2);
  assert.deepEqual([...parsed.message.instructions[1].data], [12, 7, 0, 0, 0, 0, 0, 0, 0, 6]);
  assert.ok(parsed.signatures.every((sig, i) => verifySignature(base58Decode(parsed.message.accountKeys[i]), parsed.messageBytes, sig)));
  assert.ok(!verifySignature(base58Decode(parsed.message.accountKeys[0]), parsed.messageBytes, parsed.signatures[1]));
  assert.throws(() => parseTransaction(wire.subarray(0, wire.length - 1)), /truncated/);
  assert.throws(() => parseTransaction(Uint8Array.from([...wire, 0])), /trailing bytes/);
});
