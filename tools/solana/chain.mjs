// The local Solana chain behind the JSON-RPC front (litesvm-rpc.mjs): one LiteSVM instance
// (npm `litesvm`, pinned in tools/package.json) and the Solana JSON-RPC methods served over it,
// answering in the shapes and with the error codes a real node uses, plus a few test-only
// methods (`litesvm_*`). `setUpChain` places the devnet USDC mint and funds the accounts the
// front announces.
//
// How it differs from a validator (on purpose, for tests):
// - a transaction is final as soon as it is sent; every landed transaction advances the slot
//   (and the block height, kept equal to it) by one;
// - one blockhash is valid at a time and it never expires by itself: `litesvm_expireBlockhash`
//   moves it on, after which transactions built on the old one fail with BlockhashNotFound;
// - a transaction that cannot land (bad signature, unknown blockhash, fee not payable) is
//   refused with a JSON-RPC error even under `skipPreflight`, where a node would accept it and
//   let it vanish; one that fails in an instruction lands with its error and its fee charged;
// - `requestAirdrop` credits the account directly;
// - no WebSocket subscriptions, no address lookup table resolution in `getTransaction`, no
//   parsed instructions in `jsonParsed` answers.

import { createRequire } from "node:module";
import { randomBytes } from "node:crypto";
import {
  TOKEN_2022_PROGRAM,
  TOKEN_PROGRAM,
  COMPUTE_BUDGET_PROGRAM,
  MEMO_PROGRAM,
  MEMO_V1_PROGRAM,
  SYSTEM_PROGRAM,
  addressBytes,
  associatedTokenAddress,
  base58Decode,
  base58Encode,
  compileLegacyMessage,
  createAssociatedTokenIdempotent,
  isWritable,
  keypairFromLabel,
  mintData,
  mintToChecked,
  parseMessage,
  parseMint,
  parseTokenAccount,
  parseTransaction,
  randomKeypair,
  signTransaction,
  verifySignature,
} from "./wire.mjs";

const require = createRequire(import.meta.url);
// The native binding, which takes and gives bytes; the package's wrapper class would want
// @solana/kit 8 transaction objects, and the front deals in wire bytes.
const litesvm = require("litesvm/dist/internal.js");

/// Solana devnet as the official SDKs know it; the local chain poses as it.
export const DEVNET = {
  network: "solana:EtWTRABZaYq6iMfeYKouRu166VU2xqa1",
  v1Network: "solana-devnet",
  genesisHash: "EtWTRABZaYq6iMfeYKouRu166VU2xqa1wcaWoxPkrZBG",
  usdc: "4zMMC9srt5Ri5X14GAgXhaHii3GnPAEERYPJgZJDncDU",
};
export const USDC_DECIMALS = 6;
/// Lamports per signature, as on every cluster.
export const LAMPORTS_PER_SIGNATURE = 5000n;
/// How many block heights after `getLatestBlockhash` it says a blockhash stays valid.
const BLOCKHASH_VALIDITY = 150n;
const U64_MAX = 18446744073709551615n;

/// A JSON-RPC error with its code, message and optional data.
export class RpcError extends Error {
  constructor(code, message, data) {
    super(message);
    this.code = code;
    this.data = data;
  }
}
const invalidParams = (message) => new RpcError(-32602, message);

// The names of LiteSVM's fieldless errors. They are `const enum`s in litesvm 1.5.0's
// dist/internal.d.ts, which do not exist at run time; test/rpc_front.test.mjs checks these
// tables against that file.
export const TRANSACTION_ERRORS = [
  "AccountInUse", "AccountLoadedTwice", "AccountNotFound", "ProgramAccountNotFound",
  "InsufficientFundsForFee", "InvalidAccountForFee", "AlreadyProcessed", "BlockhashNotFound",
  "CallChainTooDeep", "MissingSignatureForFee", "InvalidAccountIndex", "SignatureFailure",
  "InvalidProgramForExecution", "SanitizeFailure", "ClusterMaintenance", "AccountBorrowOutstanding",
  "WouldExceedMaxBlockCostLimit", "UnsupportedVersion", "InvalidWritableAccount",
  "WouldExceedMaxAccountCostLimit", "WouldExceedAccountDataBlockLimit", "TooManyAccountLocks",
  "AddressLookupTableNotFound", "InvalidAddressLookupTableOwner", "InvalidAddressLookupTableData",
  "InvalidAddressLookupTableIndex", "InvalidRentPayingAccount", "WouldExceedMaxVoteCostLimit",
  "WouldExceedAccountDataTotalLimit", "MaxLoadedAccountsDataSizeExceeded", "ResanitizationNeeded",
  "InvalidLoadedAccountsDataSizeLimit", "UnbalancedTransaction", "ProgramCacheHitMaxLimit",
  "CommitCancelled",
];
export const INSTRUCTION_ERRORS = [
  "GenericError", "InvalidArgument", "InvalidInstructionData", "InvalidAccountData",
  "AccountDataTooSmall", "InsufficientFunds", "IncorrectProgramId", "MissingRequiredSignature",
  "AccountAlreadyInitialized", "UninitializedAccount", "UnbalancedInstruction", "ModifiedProgramId",
  "ExternalAccountLamportSpend", "ExternalAccountDataModified", "ReadonlyLamportChange",
  "ReadonlyDataModified", "DuplicateAccountIndex", "ExecutableModified", "RentEpochModified",
  "NotEnoughAccountKeys", "AccountDataSizeChanged", "AccountNotExecutable", "AccountBorrowFailed",
  "AccountBorrowOutstanding", "DuplicateAccountOutOfSync", "InvalidError", "ExecutableDataModified",
  "ExecutableLamportChange", "ExecutableAccountNotRentExempt", "UnsupportedProgramId", "CallDepth",
  "MissingAccount", "ReentrancyNotAllowed", "MaxSeedLengthExceeded", "InvalidSeeds", "InvalidRealloc",
  "ComputationalBudgetExceeded", "PrivilegeEscalation", "ProgramEnvironmentSetupFailure",
  "ProgramFailedToComplete", "ProgramFailedToCompile", "Immutable", "IncorrectAuthority",
  "AccountNotRentExempt", "InvalidAccountOwner", "ArithmeticOverflow", "UnsupportedSysvar",
  "IllegalOwner", "MaxAccountsDataAllocationsExceeded", "MaxAccountsExceeded",
  "MaxInstructionTraceLengthExceeded", "BuiltinProgramsMustConsumeComputeUnits", "BorshIoError",
];

/// A LiteSVM transaction error as a node writes it in JSON: `"BlockhashNotFound"`,
/// `{"InstructionError":[2,{"Custom":1}]}`, `{"InsufficientFundsForRent":{"account_index":3}}`.
export function transactionErrorJson(err) {
  if (typeof err === "number") return TRANSACTION_ERRORS[err] ?? `UnknownTransactionError${err}`;
  if (err instanceof litesvm.TransactionErrorInstructionError) {
    const inner = err.err();
    let value;
    if (typeof inner === "number") value = INSTRUCTION_ERRORS[inner] ?? `UnknownInstructionError${inner}`;
    else if (inner instanceof litesvm.InstructionErrorCustom) value = { Custom: inner.code };
    else value = { BorshIoError: inner.msg };
    return { InstructionError: [err.index, value] };
  }
  if (err instanceof litesvm.TransactionErrorDuplicateInstruction) return { DuplicateInstruction: err.index };
  if (err instanceof litesvm.TransactionErrorInsufficientFundsForRent)
    return { InsufficientFundsForRent: { account_index: err.accountIndex } };
  if (err instanceof litesvm.TransactionErrorProgramExecutionTemporarilyRestricted)
    return { ProgramExecutionTemporarilyRestricted: { account_index: err.accountIndex } };
  return String(err);
}

// How a node words the errors a preflight most often meets (Rust's Display of TransactionError).
const TRANSACTION_ERROR_TEXT = {
  AccountNotFound: "Attempt to debit an account but found no record of a prior credit.",
  AlreadyProcessed: "This transaction has already been processed",
  BlockhashNotFound: "Blockhash not found",
  InsufficientFundsForFee: "Insufficient funds for fee",
  ProgramAccountNotFound: "Attempt to load a program that does not exist",
  SignatureFailure: "Transaction did not pass signature verification",
  InvalidAccountForFee: "This account may not be used to pay transaction fees",
};

/// The text a node puts after "Transaction simulation failed: " for `errJson`.
export function transactionErrorText(errJson) {
  if (typeof errJson === "string") return TRANSACTION_ERROR_TEXT[errJson] ?? errJson;
  if (errJson.InstructionError) {
    const [index, e] = errJson.InstructionError;
    const what = e.Custom !== undefined ? `custom program error: 0x${e.Custom.toString(16)}` : JSON.stringify(e).replace(/"/g, "");
    return `Error processing Instruction ${index}: ${what}`;
  }
  return JSON.stringify(errJson);
}

const toBase64 = (bytes) => Buffer.from(bytes).toString("base64");
const fromBase64 = (text) => Uint8Array.from(Buffer.from(text, "base64"));

/// The epoch, slot in epoch and epoch length of `slot` under `schedule`.
function epochOf(schedule, slot) {
  const perEpoch = schedule.slotsPerEpoch;
  if (slot < schedule.firstNormalSlot) {
    // Warm-up epochs double from 32 slots; not used by LiteSVM's default schedule.
    let epoch = 0n;
    let start = 0n;
    let length = 32n;
    while (slot >= start + length) {
      start += length;
      length *= 2n;
      epoch++;
    }
    return { epoch, slotIndex: slot - start, slotsInEpoch: length };
  }
  const since = slot - schedule.firstNormalSlot;
  return { epoch: schedule.firstNormalEpoch + since / perEpoch, slotIndex: since % perEpoch, slotsInEpoch: perEpoch };
}

/// A decimal string of `amount` atomic units with `decimals` places, trailing zeros trimmed
/// (a node's `uiAmountString`).
export function uiAmountString(amount, decimals) {
  const s = amount.toString().padStart(decimals + 1, "0");
  const whole = s.slice(0, s.length - decimals);
  const frac = s.slice(s.length - decimals).replace(/0+$/, "");
  return frac ? `${whole}.${frac}` : whole;
}

/// The local chain: a LiteSVM instance and the JSON-RPC methods over it (`methods`, by name,
/// each taking the request's `params` array).
export class LocalChain {
  constructor() {
    this.svm = new litesvm.LiteSvm();
    this.slot = this.svm.getClock().slot;
    /// Landed transactions by signature (base58): slot, blockTime, err, fee, balances, logs.
    this.landed = new Map();
    /// Signatures of landed transactions by account address, oldest first.
    this.byAddress = new Map();
    this.transactionCount = 0n;
    this.methods = this.#methods();
  }

  /// Moves the chain on by one slot (a transaction landed), keeping the clock sysvar in step.
  #advance() {
    this.slot += 1n;
    const clock = this.svm.getClock();
    clock.slot = this.slot;
    clock.unixTimestamp = BigInt(Math.floor(Date.now() / 1000));
    this.svm.setClock(clock);
  }

  #context() {
    return { slot: this.slot, apiVersion: "3.0.0" };
  }

  #respond(value) {
    return { context: this.#context(), value };
  }

  #checkMinContextSlot(config) {
    if (config?.minContextSlot !== undefined && BigInt(config.minContextSlot) > this.slot)
      throw new RpcError(-32016, "Minimum context slot has not been reached", { contextSlot: this.slot });
  }

  /// The account at `address` (base58) as `{ lamports, owner, data, executable }`, or null.
  account(address) {
    const acc = this.svm.getAccount(addressBytes(address));
    if (!acc) return null;
    return { lamports: acc.lamports(), owner: base58Encode(acc.owner()), data: acc.data(), executable: acc.executable() };
  }

  /// Writes the account at `address` (test set-up, like anvil_setCode).
  setAccount(address, { lamports, owner = SYSTEM_PROGRAM, data = new Uint8Array(0), executable = false }) {
    this.svm.setAccount(addressBytes(address), new litesvm.Account(BigInt(lamports), data, addressBytes(owner), executable, U64_MAX));
  }

  /// `account` (as `account()` gives it) in a node's `UiAccount` shape for `encoding`.
  #uiAccount(account, encoding = "binary", dataSlice) {
    if (!account) return null;
    let data = account.data;
    const base = { executable: account.executable, lamports: account.lamports, owner: account.owner, rentEpoch: U64_MAX, space: BigInt(data.length) };
    if (encoding === "jsonParsed") {
      const parsed = this.#parseAccountData(account);
      if (parsed) return { ...base, data: parsed };
      encoding = "base64";
    }
    if (dataSlice) {
      const offset = Number(dataSlice.offset ?? 0);
      data = data.subarray(offset, offset + Number(dataSlice.length ?? 0));
    }
    switch (encoding) {
      case "base64":
        return { ...base, data: [toBase64(data), "base64"] };
      case "base58":
      case "binary":
        if (data.length > 128)
          throw new RpcError(-32600, "Encoded binary (base 58) data should be less than 128 bytes, please use Base64 encoding.");
        return { ...base, data: encoding === "binary" ? base58Encode(data) : [base58Encode(data), "base58"] };
      default:
        throw invalidParams(`Invalid params: unsupported encoding: ${encoding}`);
    }
  }

  /// A token mint or token account's data as a node parses it for `jsonParsed`, or null.
  #parseAccountData(account) {
    const program = account.owner === TOKEN_PROGRAM ? "spl-token" : account.owner === TOKEN_2022_PROGRAM ? "spl-token-2022" : null;
    if (!program) return null;
    const space = BigInt(account.data.length);
    if (account.data.length === 82 || (program === "spl-token-2022" && account.data.length > 165 && account.data[165] === 1)) {
      const mint = parseMint(account.data);
      if (!mint) return null;
      return { program, parsed: { type: "mint", info: { ...mint, supply: mint.supply.toString() } }, space };
    }
    const token = parseTokenAccount(account.data);
    if (!token) return null;
    const mint = this.account(token.mint);
    const decimals = (mint && parseMint(mint.data)?.decimals) ?? 0;
    const info = {
      isNative: token.isNative !== null,
      mint: token.mint,
      owner: token.owner,
      state: token.state,
      tokenAmount: this.#tokenAmount(token.amount, decimals),
    };
    if (token.delegate) Object.assign(info, { delegate: token.delegate, delegatedAmount: this.#tokenAmount(token.delegatedAmount, decimals) });
    if (token.closeAuthority) info.closeAuthority = token.closeAuthority;
    return { program, parsed: { type: "account", info }, space };
  }

  #tokenAmount(amount, decimals) {
    const text = uiAmountString(amount, decimals);
    return { amount: amount.toString(), decimals, uiAmount: Number(text), uiAmountString: text };
  }

  /// Decodes a transaction sent as `encoding` (base58 by default, as a node does).
  #decodeTransaction(data, encoding = "base58") {
    if (typeof data !== "string") throw invalidParams("Invalid params: the transaction must be a string");
    let bytes;
    try {
      if (encoding === "base64") bytes = fromBase64(data);
      else if (encoding === "base58") bytes = base58Decode(data);
      else throw new Error(`unsupported encoding: ${encoding}. Supported encodings: base58, base64`);
    } catch (e) {
      throw invalidParams(`invalid ${encoding} encoding: ${e.message}`);
    }
    try {
      const tx = parseTransaction(bytes);
      if (tx.signatures.length !== tx.message.header.numRequiredSignatures)
        throw new Error("the number of signatures does not match the message's signers");
      return { bytes, ...tx };
    } catch (e) {
      throw invalidParams(`invalid transaction: ${e.message}`);
    }
  }

  /// Whether every required signature of `tx` verifies.
  #signaturesValid(tx) {
    return tx.signatures.every((sig, i) => verifySignature(addressBytes(tx.message.accountKeys[i]), tx.messageBytes, sig));
  }

  /// LiteSVM's simulation of `bytes` (a wire transaction) with signature checks on or off.
  #simulate(tx, bytes, sigVerify) {
    const before = this.svm.getSigverify();
    this.svm.setSigverify(sigVerify);
    try {
      return tx.message.version === "legacy" ? this.svm.simulateLegacyTransaction(bytes) : this.svm.simulateVersionedTransaction(bytes);
    } finally {
      this.svm.setSigverify(before);
    }
  }

  /// A simulation's `value` in a node's shape.
  #simulationValue(result, tx, config) {
    const failed = result instanceof litesvm.FailedTransactionMetadata;
    const meta = result.meta();
    const returned = meta.returnData();
    const returnData = returned.data().length ? { programId: base58Encode(returned.programId()), data: [toBase64(returned.data()), "base64"] } : null;
    let accounts = null;
    if (config?.accounts) {
      const post = new Map();
      if (!failed) for (const a of result.postAccounts()) post.set(base58Encode(a.address), a.account());
      accounts = (config.accounts.addresses ?? []).map((address) => {
        const acc = post.get(address);
        const account = acc
          ? { lamports: acc.lamports(), owner: base58Encode(acc.owner()), data: acc.data(), executable: acc.executable() }
          : this.account(address);
        return this.#uiAccount(account, config.accounts.encoding ?? "base64");
      });
    }
    return {
      err: failed ? transactionErrorJson(result.err()) : null,
      logs: meta.logs(),
      accounts,
      unitsConsumed: meta.computeUnitsConsumed(),
      returnData,
      innerInstructions: config?.innerInstructions ? this.#innerInstructions(meta) : null,
      replacementBlockhash: null,
      fee: this.#fee(tx.message),
    };
  }

  /// The CPI trace of `meta` in compiled form, one entry per top-level instruction with any.
  #innerInstructions(meta) {
    return meta
      .innerInstructions()
      .map((list, index) => ({
        index,
        instructions: list.map((inner) => {
          const ix = inner.instruction();
          return { programIdIndex: ix.programIdIndex(), accounts: [...ix.accounts()], data: base58Encode(ix.data()), stackHeight: inner.stackHeight() };
        }),
      }))
      .filter((entry) => entry.instructions.length > 0);
  }

  /// The fee of `message`: 5000 lamports per signature plus the priority fee (compute-unit
  /// price × limit, in micro-lamports, rounded up), as the runtime charges it.
  #fee(message) {
    let limit = null;
    let price = 0n;
    let others = 0n;
    for (const ix of message.instructions) {
      const program = message.accountKeys[ix.programIdIndex];
      const data = Buffer.from(ix.data);
      if (program === COMPUTE_BUDGET_PROGRAM && data[0] === 2 && data.length >= 5) limit = BigInt(data.readUInt32LE(1));
      else if (program === COMPUTE_BUDGET_PROGRAM && data[0] === 3 && data.length >= 9) price = data.readBigUInt64LE(1);
      else if (program !== COMPUTE_BUDGET_PROGRAM) others += program === SYSTEM_PROGRAM ? 3000n : 200000n;
    }
    if (limit === null) limit = others;
    if (limit > 1400000n) limit = 1400000n;
    const priority = (price * limit + 999999n) / 1000000n;
    return LAMPORTS_PER_SIGNATURE * BigInt(message.header.numRequiredSignatures) + priority;
  }

  /// Sends the decoded transaction `tx`; returns its signature (base58) once it has landed,
  /// whether it succeeded or failed in an instruction. Throws the JSON-RPC error a node gives
  /// when it cannot land.
  sendDecoded(tx, { skipPreflight = false } = {}) {
    const signature = base58Encode(tx.signatures[0]);
    if (this.landed.has(signature)) {
      if (skipPreflight) return signature;
      throw this.#preflightFailure("AlreadyProcessed");
    }
    if (!this.#signaturesValid(tx)) throw new RpcError(-32003, "Transaction signature verification failure");
    if (!skipPreflight) {
      const simulated = this.#simulate(tx, tx.bytes, true);
      if (simulated instanceof litesvm.FailedTransactionMetadata) {
        const value = this.#simulationValue(simulated, tx, {});
        throw new RpcError(-32002, `Transaction simulation failed: ${transactionErrorText(value.err)}`, value);
      }
    }
    const keys = tx.message.accountKeys;
    const preBalances = keys.map((k) => this.svm.getBalance(addressBytes(k)) ?? 0n);
    const result = tx.message.version === "legacy" ? this.svm.sendLegacyTransaction(tx.bytes) : this.svm.sendVersionedTransaction(tx.bytes);
    const failed = result instanceof litesvm.FailedTransactionMetadata;
    // A failed transaction landed (fee charged) exactly when LiteSVM kept it in its history.
    if (failed && !this.svm.getTransaction(tx.signatures[0])) throw this.#preflightFailure(transactionErrorJson(result.err()), result.meta());
    this.#advance();
    const meta = failed ? result.meta() : result;
    this.#record(signature, {
      bytes: tx.bytes,
      message: tx.message,
      err: failed ? transactionErrorJson(result.err()) : null,
      fee: this.#fee(tx.message),
      preBalances,
      postBalances: keys.map((k) => this.svm.getBalance(addressBytes(k)) ?? 0n),
      logs: meta.logs(),
      unitsConsumed: meta.computeUnitsConsumed(),
      innerInstructions: this.#innerInstructions(meta),
    });
    return signature;
  }

  #preflightFailure(errJson, meta) {
    return new RpcError(-32002, `Transaction simulation failed: ${transactionErrorText(errJson)}`, {
      err: errJson,
      logs: meta ? meta.logs() : [],
      accounts: null,
      unitsConsumed: meta ? meta.computeUnitsConsumed() : 0n,
      returnData: null,
      innerInstructions: null,
      replacementBlockhash: null,
    });
  }

  #record(signature, entry) {
    const memos = entry.message
      ? entry.message.instructions
          .filter((ix) => [MEMO_PROGRAM, MEMO_V1_PROGRAM].includes(entry.message.accountKeys[ix.programIdIndex]))
          .map((ix) => `[${ix.data.length}] ${Buffer.from(ix.data).toString("utf8")}`)
      : [];
    this.landed.set(signature, { ...entry, slot: this.slot, blockTime: BigInt(Math.floor(Date.now() / 1000)), memo: memos.length ? memos.join("; ") : null });
    this.transactionCount += 1n;
    for (const address of new Set(entry.message ? entry.message.accountKeys : entry.addresses)) {
      let list = this.byAddress.get(address);
      if (!list) this.byAddress.set(address, (list = []));
      list.push(signature);
    }
  }

  /// Credits `lamports` to `address`, recorded as a landed transaction with a made-up signature.
  airdrop(address, lamports) {
    const current = this.account(address);
    const preBalance = current?.lamports ?? 0n;
    this.setAccount(address, current ? { ...current, lamports: preBalance + lamports } : { lamports });
    this.#advance();
    const signature = base58Encode(randomBytes(64));
    this.#record(signature, { addresses: [address], err: null, fee: 0n, preBalances: [preBalance], postBalances: [preBalance + lamports], logs: [], unitsConsumed: 0n, innerInstructions: [] });
    return signature;
  }

  /// Parses `params[i]` as a base58 address, failing as a node does.
  static #address(value) {
    try {
      addressBytes(value);
      return value;
    } catch {
      throw invalidParams("Invalid param: Invalid");
    }
  }

  #methods() {
    const addr = LocalChain.#address;
    const status = (entry) => ({
      slot: entry.slot,
      confirmations: null,
      err: entry.err,
      status: entry.err ? { Err: entry.err } : { Ok: null },
      confirmationStatus: "finalized",
    });
    return {
      getHealth: () => "ok",
      getVersion: () => ({ "solana-core": "3.0.0", "feature-set": 0 }),
      getGenesisHash: () => DEVNET.genesisHash,
      getSlot: ([config] = []) => (this.#checkMinContextSlot(config), this.slot),
      getBlockHeight: ([config] = []) => (this.#checkMinContextSlot(config), this.slot),
      getTransactionCount: () => this.transactionCount,
      getEpochInfo: () => ({
        absoluteSlot: this.slot,
        blockHeight: this.slot,
        ...epochOf(this.svm.getEpochSchedule(), this.slot),
        transactionCount: this.transactionCount,
      }),
      getEpochSchedule: () => {
        const s = this.svm.getEpochSchedule();
        return { slotsPerEpoch: s.slotsPerEpoch, leaderScheduleSlotOffset: s.leaderScheduleSlotOffset, warmup: s.warmup, firstNormalEpoch: s.firstNormalEpoch, firstNormalSlot: s.firstNormalSlot };
      },
      getLatestBlockhash: ([config] = []) => {
        this.#checkMinContextSlot(config);
        return this.#respond({ blockhash: this.svm.latestBlockhash(), lastValidBlockHeight: this.slot + BLOCKHASH_VALIDITY });
      },
      isBlockhashValid: ([blockhash] = []) => this.#respond(blockhash === this.svm.latestBlockhash()),
      getFeeForMessage: ([message] = []) => {
        let parsed;
        try {
          parsed = parseMessage(fromBase64(String(message)));
        } catch (e) {
          throw invalidParams(`invalid message: ${e.message}`);
        }
        return this.#respond(parsed.recentBlockhash === this.svm.latestBlockhash() ? this.#fee(parsed) : null);
      },
      getMinimumBalanceForRentExemption: ([size] = []) => {
        if (!Number.isSafeInteger(size) || size < 0) throw invalidParams("Invalid params: invalid type: expected usize");
        return this.svm.minimumBalanceForRentExemption(BigInt(size));
      },
      getBalance: ([address, config] = []) => (this.#checkMinContextSlot(config), this.#respond(this.svm.getBalance(addressBytes(addr(address))) ?? 0n)),
      getAccountInfo: ([address, config] = []) => {
        this.#checkMinContextSlot(config);
        return this.#respond(this.#uiAccount(this.account(addr(address)), config?.encoding, config?.dataSlice));
      },
      getMultipleAccounts: ([addresses, config] = []) => {
        if (!Array.isArray(addresses)) throw invalidParams("Invalid params: expected an array of addresses");
        if (addresses.length > 100) throw invalidParams("Too many inputs provided; max 100");
        this.#checkMinContextSlot(config);
        return this.#respond(addresses.map((a) => this.#uiAccount(this.account(addr(a)), config?.encoding ?? "base64", config?.dataSlice)));
      },
      getProgramAccounts: ([program, config] = []) => {
        const found = this.svm.getProgramAccounts(addressBytes(addr(program)));
        const filters = config?.filters ?? [];
        const matches = (data) =>
          filters.every((f) => {
            if (f.dataSize !== undefined) return data.length === Number(f.dataSize);
            if (f.memcmp) {
              const want = f.memcmp.encoding === "base64" ? fromBase64(f.memcmp.bytes) : base58Decode(f.memcmp.bytes);
              const at = Number(f.memcmp.offset);
              return Buffer.from(data.subarray(at, at + want.length)).equals(Buffer.from(want));
            }
            if (f.tokenAccountState !== undefined) return parseTokenAccount(data) !== null;
            throw invalidParams("Invalid params: unknown filter");
          });
        const list = found
          .map((entry) => ({ pubkey: base58Encode(entry.address), acc: entry.account() }))
          .filter(({ acc }) => matches(acc.data()))
          .map(({ pubkey, acc }) => ({
            pubkey,
            account: this.#uiAccount({ lamports: acc.lamports(), owner: base58Encode(acc.owner()), data: acc.data(), executable: acc.executable() }, config?.encoding, config?.dataSlice),
          }));
        return config?.withContext ? this.#respond(list) : list;
      },
      getTokenAccountBalance: ([address] = []) => {
        const account = this.account(addr(address));
        if (!account) throw invalidParams("Invalid param: could not find account");
        const token = [TOKEN_PROGRAM, TOKEN_2022_PROGRAM].includes(account.owner) ? parseTokenAccount(account.data) : null;
        if (!token) throw invalidParams("Invalid param: not a Token account");
        const mint = this.account(token.mint);
        const decimals = (mint && parseMint(mint.data)?.decimals) ?? 0;
        return this.#respond(this.#tokenAmount(token.amount, decimals));
      },
      getTokenSupply: ([address] = []) => {
        const account = this.account(addr(address));
        const mint = account && [TOKEN_PROGRAM, TOKEN_2022_PROGRAM].includes(account.owner) ? parseMint(account.data) : null;
        if (!mint) throw invalidParams("Invalid param: not a Token mint");
        return this.#respond(this.#tokenAmount(mint.supply, mint.decimals));
      },
      requestAirdrop: ([address, lamports] = []) => {
        if (!Number.isSafeInteger(lamports) || lamports <= 0) throw invalidParams("Invalid params: lamports must be a positive integer");
        return this.airdrop(addr(address), BigInt(lamports));
      },
      simulateTransaction: ([data, config = {}] = []) => {
        if (config.sigVerify && config.replaceRecentBlockhash)
          throw invalidParams("sigVerify may not be used with replaceRecentBlockhash");
        this.#checkMinContextSlot(config);
        const tx = this.#decodeTransaction(data, config.encoding);
        if (config.sigVerify && !this.#signaturesValid(tx)) throw new RpcError(-32003, "Transaction signature verification failure");
        let bytes = tx.bytes;
        let replacementBlockhash = null;
        if (config.replaceRecentBlockhash) {
          const latest = this.svm.latestBlockhash();
          bytes = Uint8Array.from(tx.bytes);
          bytes.set(addressBytes(latest), tx.bytes.length - tx.messageBytes.length + tx.message.blockhashOffset);
          replacementBlockhash = { blockhash: latest, lastValidBlockHeight: this.slot + BLOCKHASH_VALIDITY };
        }
        const value = this.#simulationValue(this.#simulate(tx, bytes, false), tx, config);
        return this.#respond({ ...value, replacementBlockhash });
      },
      sendTransaction: ([data, config = {}] = []) => {
        this.#checkMinContextSlot(config);
        return this.sendDecoded(this.#decodeTransaction(data, config.encoding), config);
      },
      getSignatureStatuses: ([signatures] = []) => {
        if (!Array.isArray(signatures)) throw invalidParams("Invalid params: expected an array of signatures");
        if (signatures.length > 256) throw invalidParams("Too many inputs provided; max 256");
        return this.#respond(signatures.map((s) => (this.landed.has(s) ? status(this.landed.get(s)) : null)));
      },
      getSignaturesForAddress: ([address, config = {}] = []) => {
        let list = [...(this.byAddress.get(addr(address)) ?? [])].reverse();
        if (config.before) {
          const at = list.indexOf(config.before);
          list = at < 0 ? [] : list.slice(at + 1);
        }
        if (config.until) {
          const at = list.indexOf(config.until);
          if (at >= 0) list = list.slice(0, at);
        }
        const limit = config.limit ?? 1000;
        if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000) throw invalidParams("Invalid limit; max 1000");
        return list.slice(0, limit).map((signature) => {
          const e = this.landed.get(signature);
          return { signature, slot: e.slot, err: e.err, memo: e.memo, blockTime: e.blockTime, confirmationStatus: "finalized" };
        });
      },
      getTransaction: ([signature, config] = []) => {
        const entry = this.landed.get(signature);
        if (!entry || !entry.bytes) return null;
        const encoding = typeof config === "string" ? config : config?.encoding ?? "json";
        const maxVersion = typeof config === "object" ? config?.maxSupportedTransactionVersion : undefined;
        const { message } = entry;
        if (message.version !== "legacy" && (maxVersion === undefined || maxVersion < message.version))
          throw new RpcError(
            -32015,
            `Transaction version (${message.version}) is not supported by the requesting client. Please try the request again with the following configuration parameter: "maxSupportedTransactionVersion": ${message.version}`,
          );
        let transaction;
        if (encoding === "base64") transaction = [toBase64(entry.bytes), "base64"];
        else if (encoding === "base58") transaction = [base58Encode(entry.bytes), "base58"];
        else if (encoding === "json" || encoding === "jsonParsed") {
          const parsed = parseTransaction(entry.bytes);
          const keys = message.accountKeys;
          const body = {
            header: message.header,
            recentBlockhash: message.recentBlockhash,
            accountKeys:
              encoding === "json"
                ? keys
                : keys.map((pubkey, i) => ({ pubkey, writable: isWritable(message, i), signer: i < message.header.numRequiredSignatures, source: "transaction" })),
            instructions: message.instructions.map((ix) =>
              encoding === "json"
                ? { programIdIndex: ix.programIdIndex, accounts: ix.accounts, data: base58Encode(ix.data), stackHeight: null }
                : { programId: keys[ix.programIdIndex], accounts: ix.accounts.map((i) => keys[i]), data: base58Encode(ix.data), stackHeight: null },
            ),
          };
          if (message.version !== "legacy")
            body.addressTableLookups = message.addressTableLookups;
          transaction = { signatures: parsed.signatures.map(base58Encode), message: body };
        } else throw invalidParams(`Invalid params: unsupported encoding: ${encoding}`);
        return {
          slot: entry.slot,
          blockTime: entry.blockTime,
          version: message.version,
          transaction,
          meta: {
            err: entry.err,
            status: entry.err ? { Err: entry.err } : { Ok: null },
            fee: entry.fee,
            preBalances: entry.preBalances,
            postBalances: entry.postBalances,
            innerInstructions: entry.innerInstructions,
            logMessages: entry.logs,
            preTokenBalances: [],
            postTokenBalances: [],
            rewards: [],
            loadedAddresses: { writable: [], readonly: [] },
            computeUnitsConsumed: entry.unitsConsumed,
          },
        };
      },

      // Test-only methods.
      litesvm_setAccount: ([address, account] = []) => {
        if (!account || typeof account !== "object") throw invalidParams("Invalid params: expected [address, {lamports, owner, data, executable}]");
        let data;
        try {
          data = fromBase64(account.data ?? "");
          addressBytes(account.owner ?? SYSTEM_PROGRAM);
        } catch (e) {
          throw invalidParams(`Invalid params: ${e.message}`);
        }
        if (!(Number.isSafeInteger(account.lamports) || /^\d+$/.test(String(account.lamports)))) throw invalidParams("Invalid params: lamports must be a non-negative integer");
        this.setAccount(addr(address), { lamports: BigInt(account.lamports), owner: account.owner ?? SYSTEM_PROGRAM, data, executable: Boolean(account.executable) });
        return null;
      },
      litesvm_expireBlockhash: () => {
        this.svm.expireBlockhash();
        return this.svm.latestBlockhash();
      },
      litesvm_warpToSlot: ([slot] = []) => {
        if (!Number.isSafeInteger(slot) || BigInt(slot) < this.slot) throw invalidParams("Invalid params: the slot must be an integer not below the current slot");
        this.slot = BigInt(slot) - 1n;
        this.#advance();
        return null;
      },
    };
  }
}

/// Builds the local chain and sets it up as the front announces it: the 6-decimal mint at the
/// devnet USDC address (mint authority a key held here), a funded fee payer, a payTo with its
/// token account, and `payers` payers each holding `payerFunds` atomic units in their token
/// account and no SOL. With `seed`, every key is derived from it (the same seed gives the same
/// chain); without, keys are random. Returns `{ chain, state }`, `state` being what the front
/// prints.
export function setUpChain({ payers = 4, seed, payerFunds = 1000000000n, feePayerLamports = 1000000000000n }) {
  const key = (label) => (seed === undefined ? randomKeypair() : keypairFromLabel(`x402-litesvm/${seed}/${label}`));
  const chain = new LocalChain();
  const mintAuthority = key("mint-authority");
  const feePayer = key("fee-payer");
  const payTo = key("pay-to");
  const payerKeys = Array.from({ length: payers }, (_, i) => key(`payer-${i}`));
  const mint = DEVNET.usdc;

  chain.setAccount(mint, {
    lamports: chain.svm.minimumBalanceForRentExemption(82n),
    owner: TOKEN_PROGRAM,
    data: mintData({ mintAuthority: mintAuthority.address, decimals: USDC_DECIMALS }),
  });
  chain.setAccount(feePayer.address, { lamports: feePayerLamports });
  // The mint authority pays for the set-up (token account rent and fees), so the fee payer
  // starts with a round balance.
  chain.setAccount(mintAuthority.address, { lamports: 10000000000n + 2100000n * BigInt(payers + 1) });

  // Token accounts made and funded by real transactions, a few owners per transaction.
  const owners = [{ owner: payTo.address, funds: 0n }, ...payerKeys.map((k) => ({ owner: k.address, funds: payerFunds }))];
  for (let i = 0; i < owners.length; i += 4) {
    const instructions = [];
    for (const { owner, funds } of owners.slice(i, i + 4)) {
      instructions.push(createAssociatedTokenIdempotent({ payer: mintAuthority.address, owner, mint }));
      if (funds > 0n)
        instructions.push(mintToChecked({ mint, destination: associatedTokenAddress(owner, mint), authority: mintAuthority.address, amount: funds, decimals: USDC_DECIMALS }));
    }
    const { messageBytes, signers } = compileLegacyMessage({ payer: mintAuthority.address, instructions, recentBlockhash: chain.svm.latestBlockhash() });
    const bytes = signTransaction(messageBytes, signers, [mintAuthority]);
    const signature = chain.sendDecoded({ bytes, ...parseTransaction(bytes) });
    const err = chain.landed.get(signature).err;
    if (err) throw new Error(`set-up transaction failed: ${JSON.stringify(err)}`);
  }

  const state = {
    network: DEVNET.network,
    v1Network: DEVNET.v1Network,
    genesisHash: DEVNET.genesisHash,
    mint,
    decimals: USDC_DECIMALS,
    tokenProgram: TOKEN_PROGRAM,
    mintAuthority: mintAuthority.address,
    mintAuthorityKey: mintAuthority.secretKey,
    feePayer: feePayer.address,
    feePayerKey: feePayer.secretKey,
    payTo: payTo.address,
    payToKey: payTo.secretKey,
    payToTokenAccount: associatedTokenAddress(payTo.address, mint),
    payers: payerKeys.map((k) => k.address),
    payerKeys: payerKeys.map((k) => k.secretKey),
    payerTokenAccounts: payerKeys.map((k) => associatedTokenAddress(k.address, mint)),
    payerFunds: payerFunds.toString(),
  };
  return { chain, state };
}
