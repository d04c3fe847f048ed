// Solana's wire formats for the local chain's front (litesvm-rpc.mjs), written against node:crypto
// alone so that the front does not depend on which @solana/kit the tree resolves: base58,
// ed25519 keys as Solana tools write them, program-derived and associated token addresses,
// parsing and sanity-checking wire transactions and their messages, and compiling and signing
// the legacy transactions the front sends to set itself up.

import { createHash, createPrivateKey, createPublicKey, randomBytes, sign, verify } from "node:crypto";

// ---------------------------------------------------------------------------------------------
// base58

const ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
const ALPHABET_INDEX = new Map([...ALPHABET].map((c, i) => [c, BigInt(i)]));

/// `bytes` in base58 (Bitcoin's alphabet), leading zero bytes as leading '1's.
export function base58Encode(bytes) {
  let zeros = 0;
  while (zeros < bytes.length && bytes[zeros] === 0) zeros++;
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  let out = "";
  while (n > 0n) {
    out = ALPHABET[Number(n % 58n)] + out;
    n /= 58n;
  }
  return "1".repeat(zeros) + out;
}

/// The bytes of the base58 string `text`; throws on a character outside the alphabet.
export function base58Decode(text) {
  if (typeof text !== "string") throw new Error("not a string");
  let zeros = 0;
  while (zeros < text.length && text[zeros] === "1") zeros++;
  let n = 0n;
  for (const c of text) {
    const v = ALPHABET_INDEX.get(c);
    if (v === undefined) throw new Error(`invalid base58 character ${JSON.stringify(c)}`);
    n = n * 58n + v;
  }
  const body = [];
  while (n > 0n) {
    body.unshift(Number(n & 0xffn));
    n >>= 8n;
  }
  return Uint8Array.from([...new Array(zeros).fill(0), ...body]);
}

/// The 32 bytes of the base58 address `text`; throws when it is not 32 bytes.
export function addressBytes(text) {
  const bytes = base58Decode(text);
  if (bytes.length !== 32) throw new Error(`an address is 32 bytes, this is ${bytes.length}`);
  return bytes;
}

// ---------------------------------------------------------------------------------------------
// ed25519 keys

const PKCS8_ED25519_PREFIX = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

/// A key pair from its 32-byte ed25519 seed: `address` (base58 public key), `secretKey` (the
/// 64 bytes seed ‖ public key, base58, as `solana-keygen` and `Keypair::to_base58_string` write
/// it), `publicKey` (bytes) and `sign(message)` (64-byte signature).
export function keypairFromSeed(seed) {
  if (seed.length !== 32) throw new Error("an ed25519 seed is 32 bytes");
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_ED25519_PREFIX, seed]), format: "der", type: "pkcs8" });
  const spki = createPublicKey(privateKey).export({ format: "der", type: "spki" });
  const publicKey = Uint8Array.from(spki.subarray(spki.length - 32));
  return {
    address: base58Encode(publicKey),
    publicKey,
    secretKey: base58Encode(Uint8Array.from([...seed, ...publicKey])),
    sign: (message) => Uint8Array.from(sign(null, message, privateKey)),
  };
}

/// A key pair whose seed is sha256(`label`): the same label gives the same key.
export const keypairFromLabel = (label) => keypairFromSeed(createHash("sha256").update(label).digest());

/// A key pair with a random seed.
export const randomKeypair = () => keypairFromSeed(randomBytes(32));

/// Whether `signature` (64 bytes) is `publicKey`'s (32 bytes) ed25519 signature of `message`.
export function verifySignature(publicKey, message, signature) {
  if (signature.length !== 64) return false;
  try {
    const key = createPublicKey({ key: Buffer.concat([SPKI_ED25519_PREFIX, publicKey]), format: "der", type: "spki" });
    return verify(null, message, key, signature);
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// program-derived addresses

const P = (1n << 255n) - 19n;
const modP = (x) => ((x % P) + P) % P;
function powMod(base, exponent) {
  let result = 1n;
  base = modP(base);
  while (exponent > 0n) {
    if (exponent & 1n) result = (result * base) % P;
    base = (base * base) % P;
    exponent >>= 1n;
  }
  return result;
}
const D = modP(-121665n * powMod(121666n, P - 2n));

/// Whether the 32 bytes decompress to a point of the ed25519 curve, as curve25519-dalek's
/// `CompressedEdwardsY::decompress` decides it (y taken mod p, the sign bit ignored): a
/// program-derived address must not.
export function isOnCurve(bytes) {
  let y = 0n;
  for (let i = 31; i >= 0; i--) y = (y << 8n) | BigInt(i === 31 ? bytes[i] & 0x7f : bytes[i]);
  y = modP(y);
  const y2 = (y * y) % P;
  const u = modP(y2 - 1n);
  const v = modP(D * y2 + 1n);
  if (u === 0n) return true;
  // u/v is a square exactly when u·v is (the Legendre symbol is multiplicative and v is never
  // 0), that is when (u·v)^((p-1)/2) is 1 (Euler's criterion).
  return powMod(u * v, (P - 1n) / 2n) === 1n;
}

/// `find_program_address(seeds, programId)`: the first off-curve
/// sha256(seeds ‖ [bump] ‖ programId ‖ "ProgramDerivedAddress") for bump 255 down to 0, as
/// `[address, bump]`.
export function findProgramAddress(seeds, programId) {
  const program = addressBytes(programId);
  for (let bump = 255; bump >= 0; bump--) {
    const hash = createHash("sha256");
    for (const seed of seeds) hash.update(seed);
    hash.update(Uint8Array.of(bump)).update(program).update("ProgramDerivedAddress");
    const candidate = hash.digest();
    if (!isOnCurve(candidate)) return [base58Encode(candidate), bump];
  }
  throw new Error("no program-derived address for these seeds");
}

export const SYSTEM_PROGRAM = "11111111111111111111111111111111";
export const TOKEN_PROGRAM = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
export const TOKEN_2022_PROGRAM = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";
export const ASSOCIATED_TOKEN_PROGRAM = "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL";
export const COMPUTE_BUDGET_PROGRAM = "ComputeBudget111111111111111111111111111111";
export const MEMO_PROGRAM = "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr";
export const MEMO_V1_PROGRAM = "Memo1UhkJRfHyvLMcVucJwxXeuD728EqVDDwQDxFMNo";

const ataCache = new Map();

/// The associated token account of `owner` for `mint` under `tokenProgram` (remembered: the
/// derivation takes a millisecond or two).
export function associatedTokenAddress(owner, mint, tokenProgram = TOKEN_PROGRAM) {
  const key = `${owner}/${mint}/${tokenProgram}`;
  let found = ataCache.get(key);
  if (!found) {
    found = findProgramAddress([addressBytes(owner), addressBytes(tokenProgram), addressBytes(mint)], ASSOCIATED_TOKEN_PROGRAM)[0];
    ataCache.set(key, found);
  }
  return found;
}

// ---------------------------------------------------------------------------------------------
// wire transactions

/// Reads Solana's compact-u16 at `offset` of `bytes`: `[value, nextOffset]`.
function readCompactU16(bytes, offset) {
  let value = 0;
  for (let i = 0; i < 3; i++) {
    if (offset >= bytes.length) throw new Error("truncated compact-u16");
    const byte = bytes[offset++];
    value |= (byte & 0x7f) << (7 * i);
    if ((byte & 0x80) === 0) return [value, offset];
  }
  throw new Error("compact-u16 longer than 3 bytes");
}

/// `n` as Solana's compact-u16.
export function compactU16(n) {
  const out = [];
  do {
    let byte = n & 0x7f;
    n >>= 7;
    if (n) byte |= 0x80;
    out.push(byte);
  } while (n);
  return out;
}

/// Parses a wire transaction: `{ signatures: [Uint8Array(64)], messageBytes, message }`, with
/// `message` as `parseMessage` gives it. Throws with what is wrong.
export function parseTransaction(bytes) {
  let [count, offset] = readCompactU16(bytes, 0);
  const signatures = [];
  for (let i = 0; i < count; i++) {
    if (offset + 64 > bytes.length) throw new Error("truncated signatures");
    signatures.push(bytes.subarray(offset, offset + 64));
    offset += 64;
  }
  const messageBytes = bytes.subarray(offset);
  return { signatures, messageBytes, message: parseMessage(messageBytes) };
}

/// Parses a legacy or v0 message: `{ version ("legacy" or 0), header: { numRequiredSignatures,
/// numReadonlySignedAccounts, numReadonlyUnsignedAccounts }, accountKeys (base58),
/// recentBlockhash, blockhashOffset, instructions: [{ programIdIndex, accounts, data }],
/// addressTableLookups: [{ accountKey, writableIndexes, readonlyIndexes }] }`. Throws when the
/// bytes do not parse or the indexes do not hold together (Solana's sanitize checks).
export function parseMessage(bytes) {
  let offset = 0;
  let version = "legacy";
  if (bytes.length === 0) throw new Error("empty message");
  if (bytes[0] & 0x80) {
    version = bytes[0] & 0x7f;
    if (version !== 0) throw new Error(`unsupported message version ${version}`);
    offset = 1;
  }
  if (offset + 3 > bytes.length) throw new Error("truncated header");
  const header = {
    numRequiredSignatures: bytes[offset],
    numReadonlySignedAccounts: bytes[offset + 1],
    numReadonlyUnsignedAccounts: bytes[offset + 2],
  };
  offset += 3;
  let keyCount;
  [keyCount, offset] = readCompactU16(bytes, offset);
  const accountKeys = [];
  for (let i = 0; i < keyCount; i++) {
    if (offset + 32 > bytes.length) throw new Error("truncated account keys");
    accountKeys.push(base58Encode(bytes.subarray(offset, offset + 32)));
    offset += 32;
  }
  if (offset + 32 > bytes.length) throw new Error("truncated blockhash");
  const blockhashOffset = offset;
  const recentBlockhash = base58Encode(bytes.subarray(offset, offset + 32));
  offset += 32;
  let instructionCount;
  [instructionCount, offset] = readCompactU16(bytes, offset);
  const instructions = [];
  for (let i = 0; i < instructionCount; i++) {
    if (offset >= bytes.length) throw new Error("truncated instruction");
    const programIdIndex = bytes[offset++];
    let n;
    [n, offset] = readCompactU16(bytes, offset);
    if (offset + n > bytes.length) throw new Error("truncated instruction accounts");
    const accounts = [...bytes.subarray(offset, offset + n)];
    offset += n;
    [n, offset] = readCompactU16(bytes, offset);
    if (offset + n > bytes.length) throw new Error("truncated instruction data");
    const data = bytes.subarray(offset, offset + n);
    offset += n;
    instructions.push({ programIdIndex, accounts, data });
  }
  const addressTableLookups = [];
  if (version !== "legacy") {
    let lookupCount;
    [lookupCount, offset] = readCompactU16(bytes, offset);
    for (let i = 0; i < lookupCount; i++) {
      if (offset + 32 > bytes.length) throw new Error("truncated address table lookup");
      const accountKey = base58Encode(bytes.subarray(offset, offset + 32));
      offset += 32;
      let n;
      [n, offset] = readCompactU16(bytes, offset);
      const writableIndexes = [...bytes.subarray(offset, offset + n)];
      offset += n;
      [n, offset] = readCompactU16(bytes, offset);
      const readonlyIndexes = [...bytes.subarray(offset, offset + n)];
      offset += n;
      if (offset > bytes.length) throw new Error("truncated address table lookup");
      addressTableLookups.push({ accountKey, writableIndexes, readonlyIndexes });
    }
  }
  if (offset !== bytes.length) throw new Error("trailing bytes after the message");

  // What Solana's `sanitize` checks of a message.
  const loaded = addressTableLookups.reduce((n, l) => n + l.writableIndexes.length + l.readonlyIndexes.length, 0);
  const total = accountKeys.length + loaded;
  if (header.numRequiredSignatures === 0) throw new Error("a message needs at least one signer");
  if (header.numRequiredSignatures + header.numReadonlyUnsignedAccounts > accountKeys.length)
    throw new Error("header counts exceed the account keys");
  if (header.numReadonlySignedAccounts >= header.numRequiredSignatures)
    throw new Error("the fee payer must be a writable signer");
  if (new Set(accountKeys).size !== accountKeys.length) throw new Error("duplicate account keys");
  for (const ix of instructions) {
    if (ix.programIdIndex === 0 || ix.programIdIndex >= accountKeys.length)
      throw new Error("instruction program index out of range");
    if (ix.accounts.some((i) => i >= total)) throw new Error("instruction account index out of range");
  }
  return { version, header, accountKeys, recentBlockhash, blockhashOffset, instructions, addressTableLookups };
}

/// Whether static account `index` of `message` is writable.
export function isWritable(message, index) {
  const { numRequiredSignatures: signers, numReadonlySignedAccounts: roSigned, numReadonlyUnsignedAccounts: roUnsigned } = message.header;
  if (index < signers) return index < signers - roSigned;
  return index < message.accountKeys.length - roUnsigned;
}

/// Compiles a legacy message: `payer` (address) pays; `instructions` are
/// `{ programId, keys: [{ pubkey, isSigner, isWritable }], data: Uint8Array }`. Keys are
/// ordered as Solana orders them: the payer, writable signers, read-only signers, writable and
/// then read-only others.
export function compileLegacyMessage({ payer, instructions, recentBlockhash }) {
  const metas = new Map([[payer, { isSigner: true, isWritable: true }]]);
  const note = (pubkey, isSigner, isWritable) => {
    const m = metas.get(pubkey) ?? { isSigner: false, isWritable: false };
    metas.set(pubkey, { isSigner: m.isSigner || isSigner, isWritable: m.isWritable || isWritable });
  };
  for (const ix of instructions) {
    for (const k of ix.keys) note(k.pubkey, k.isSigner, k.isWritable);
    note(ix.programId, false, false);
  }
  const rank = ([key, m]) => (key === payer ? 0 : m.isSigner ? (m.isWritable ? 1 : 2) : m.isWritable ? 3 : 4);
  const ordered = [...metas].map((e, i) => [e, i]).sort((a, b) => rank(a[0]) - rank(b[0]) || a[1] - b[1]).map(([e]) => e);
  const keys = ordered.map(([k]) => k);
  const index = new Map(keys.map((k, i) => [k, i]));
  const header = [
    ordered.filter(([, m]) => m.isSigner).length,
    ordered.filter(([, m]) => m.isSigner && !m.isWritable).length,
    ordered.filter(([, m]) => !m.isSigner && !m.isWritable).length,
  ];
  const out = [...header, ...compactU16(keys.length)];
  for (const k of keys) out.push(...addressBytes(k));
  out.push(...addressBytes(recentBlockhash), ...compactU16(instructions.length));
  for (const ix of instructions) {
    out.push(index.get(ix.programId), ...compactU16(ix.keys.length), ...ix.keys.map((k) => index.get(k.pubkey)));
    out.push(...compactU16(ix.data.length), ...ix.data);
  }
  return { messageBytes: Uint8Array.from(out), signers: keys.slice(0, header[0]) };
}

/// The wire transaction of `messageBytes` signed by `keypairs` (each signer of the message
/// must be among them).
export function signTransaction(messageBytes, signerAddresses, keypairs) {
  const byAddress = new Map(keypairs.map((k) => [k.address, k]));
  const signatures = signerAddresses.map((a) => {
    const kp = byAddress.get(a);
    if (!kp) throw new Error(`no key for signer ${a}`);
    return kp.sign(messageBytes);
  });
  return Uint8Array.from([...compactU16(signatures.length), ...signatures.flatMap((s) => [...s]), ...messageBytes]);
}

// ---------------------------------------------------------------------------------------------
// SPL Token layouts and instructions

/// A u64 as 8 little-endian bytes.
export function u64le(value) {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(value));
  return [...b];
}

/// The 82 bytes of an initialized SPL Token mint.
export function mintData({ mintAuthority, supply = 0n, decimals, freezeAuthority = null }) {
  const data = Buffer.alloc(82);
  if (mintAuthority) {
    data.writeUInt32LE(1, 0);
    Buffer.from(addressBytes(mintAuthority)).copy(data, 4);
  }
  data.writeBigUInt64LE(BigInt(supply), 36);
  data[44] = decimals;
  data[45] = 1;
  if (freezeAuthority) {
    data.writeUInt32LE(1, 46);
    Buffer.from(addressBytes(freezeAuthority)).copy(data, 50);
  }
  return data;
}

/// The fields of an SPL Token (or Token-2022 base) mint's data, or null when it is not one.
export function parseMint(data) {
  if (data.length < 82 || data[45] !== 1) return null;
  const b = Buffer.from(data.buffer, data.byteOffset, data.length);
  const option = (at) => (b.readUInt32LE(at) === 1 ? base58Encode(b.subarray(at + 4, at + 36)) : null);
  return { mintAuthority: option(0), supply: b.readBigUInt64LE(36), decimals: b[44], isInitialized: true, freezeAuthority: option(46) };
}

/// The fields of an SPL Token (or Token-2022 base) token account's data, or null when it is not
/// one.
export function parseTokenAccount(data) {
  if (data.length < 165 || data[108] === 0) return null;
  const b = Buffer.from(data.buffer, data.byteOffset, data.length);
  const option = (at) => (b.readUInt32LE(at) === 1 ? base58Encode(b.subarray(at + 4, at + 36)) : null);
  return {
    mint: base58Encode(b.subarray(0, 32)),
    owner: base58Encode(b.subarray(32, 64)),
    amount: b.readBigUInt64LE(64),
    delegate: option(72),
    state: ["uninitialized", "initialized", "frozen"][b[108]] ?? "uninitialized",
    isNative: b.readUInt32LE(109) === 1 ? b.readBigUInt64LE(113) : null,
    delegatedAmount: b.readBigUInt64LE(121),
    closeAuthority: option(129),
  };
}

/// Associated Token Account program's `CreateIdempotent`.
export function createAssociatedTokenIdempotent({ payer, owner, mint, tokenProgram = TOKEN_PROGRAM }) {
  return {
    programId: ASSOCIATED_TOKEN_PROGRAM,
    keys: [
      { pubkey: payer, isSigner: true, isWritable: true },
      { pubkey: associatedTokenAddress(owner, mint, tokenProgram), isSigner: false, isWritable: true },
      { pubkey: owner, isSigner: false, isWritable: false },
      { pubkey: mint, isSigner: false, isWritable: false },
      { pubkey: SYSTEM_PROGRAM, isSigner: false, isWritable: false },
      { pubkey: tokenProgram, isSigner: false, isWritable: false },
    ],
    data: Uint8Array.of(1),
  };
}

/// SPL Token `MintToChecked` (14).
export function mintToChecked({ mint, destination, authority, amount, decimals, tokenProgram = TOKEN_PROGRAM }) {
  return {
    programId: tokenProgram,
    keys: [
      { pubkey: mint, isSigner: false, isWritable: true },
      { pubkey: destination, isSigner: false, isWritable: true },
      { pubkey: authority, isSigner: true, isWritable: false },
    ],
    data: Uint8Array.from([14, ...u64le(amount), decimals]),
  };
}

/// SPL Token `TransferChecked` (12).
export function transferChecked({ source, mint, destination, authority, amount, decimals, tokenProgram = TOKEN_PROGRAM }) {
  return {
    programId: tokenProgram,
    keys: [
      { pubkey: source, isSigner: false, isWritable: true },
      { pubkey: mint, isSigner: false, isWritable: false },
      { pubkey: destination, isSigner: false, isWritable: true },
      { pubkey: authority, isSigner: true, isWritable: false },
    ],
    data: Uint8Array.from([12, ...u64le(amount), decimals]),
  };
}
