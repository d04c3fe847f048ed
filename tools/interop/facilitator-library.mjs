// The OFFICIAL x402 facilitator library (@x402/core x402Facilitator with the @x402/evm
// facilitator schemes) set up the way the interop scripts run it: a signer on a JSON-RPC
// endpoint, and one x402Facilitator with every scheme we compare ourselves against registered.
// Shared by official-verify.mjs (verify only) and official-facilitator.mjs (HTTP, settles).

import { x402Facilitator } from "@x402/core/facilitator";
import { toFacilitatorEvmSigner } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/facilitator";
import { UptoEvmScheme } from "@x402/evm/upto/facilitator";
import { BatchSettlementEvmScheme } from "@x402/evm/batch-settlement/facilitator";
import { toFacilitatorSvmSigner } from "@x402/svm";
import { ExactSvmScheme } from "@x402/svm/exact/facilitator";
import { ExactSvmSchemeV1 } from "@x402/svm/exact/v1/facilitator";
import { createKeyPairSignerFromBytes, getBase58Encoder } from "@solana/kit";
import { createWalletClient, defineChain, http, publicActions } from "viem";
import { privateKeyToAccount } from "viem/accounts";

/// The facilitator schemes registered on the network, each built from the signer and the
/// settings (`eip6492AllowedFactories`, the batch-settlement receiver `authorizer`). A new scheme
/// is one more line here.
const SCHEMES = [
  (signer, { eip6492AllowedFactories }) => new ExactEvmScheme(signer, { eip6492AllowedFactories }),
  (signer) => new UptoEvmScheme(signer),
  (signer, { authorizer }) => new BatchSettlementEvmScheme(signer, authorizer),
];

/// The official facilitator configured from the environment read through `script` (what
/// startScript returns): RPC_URL (required), FACILITATOR_PRIVATE_KEY (required), NETWORK (an
/// eip155 CAIP-2 id, which also gives the chain id) and EIP6492_ALLOWED_FACTORIES (optional,
/// comma-separated factory addresses the exact scheme lets counterfactual ERC-6492 payers deploy
/// through) and RECEIVER_AUTHORIZER_PRIVATE_KEY (optional: the batch-settlement receiver
/// authorizer's key, the facilitator's own when absent). With `sends` false its signer refuses
/// to send transactions. Returns the
/// x402Facilitator (every scheme of SCHEMES registered on NETWORK for x402 v2), the network and
/// the signer's address.
///
/// On a `solana:` NETWORK it is the @x402/svm `exact` scheme instead (v2 on NETWORK, v1 on the
/// SDK's v1 names), with FACILITATOR_PRIVATE_KEY a base58 64-byte secret key (the fee payer);
/// see solanaFacilitatorFromEnv.
export async function facilitatorFromEnv(script, { sends }) {
  const rpcUrl = script.requiredUrl("RPC_URL");
  if (script.network().startsWith("solana:")) return solanaFacilitatorFromEnv(script, rpcUrl, sends);
  const key = script.privateKey("FACILITATOR_PRIVATE_KEY");
  const network = script.network();
  const match = /^eip155:(\d+)$/.exec(network);
  const chainId = match ? Number(match[1]) : NaN;
  if (!Number.isSafeInteger(chainId) || chainId <= 0) script.fail(`NETWORK must be eip155:<chain id>, got ${network}`);
  const eip6492AllowedFactories = (process.env.EIP6492_ALLOWED_FACTORIES || "")
    .split(",")
    .map((a) => a.trim())
    .filter((a) => a.length > 0);

  const authorizerKey = process.env.RECEIVER_AUTHORIZER_PRIVATE_KEY
    ? script.privateKey("RECEIVER_AUTHORIZER_PRIVATE_KEY")
    : key;
  const authorizer = privateKeyToAccount(authorizerKey);

  const signer = facilitatorSigner(rpcUrl, key, chainId, sends);
  const facilitator = new x402Facilitator();
  for (const scheme of SCHEMES) facilitator.register(network, scheme(signer, { eip6492AllowedFactories, authorizer }));
  return { facilitator, network, address: signer.getAddresses()[0] };
}

/// The official facilitator of `exact` on Solana: the fee payer's key from
/// FACILITATOR_PRIVATE_KEY (base58, 64 bytes), the v2 scheme on NETWORK and the v1 scheme on
/// `solana-devnet`, `solana-testnet` and `solana`. With `sends` false its signer refuses to
/// send transactions.
async function solanaFacilitatorFromEnv(script, rpcUrl, sends) {
  const network = script.network();
  let keyPair;
  try {
    keyPair = await createKeyPairSignerFromBytes(getBase58Encoder().encode(process.env.FACILITATOR_PRIVATE_KEY ?? ""));
  } catch (e) {
    script.fail(`FACILITATOR_PRIVATE_KEY must be a base58 64-byte Solana secret key: ${e.message}`);
  }
  const signer = toFacilitatorSvmSigner(keyPair, { defaultRpcUrl: rpcUrl });
  if (!sends) {
    signer.sendTransaction = async () => {
      throw new Error("this facilitator is verify-only and never sends transactions");
    };
  }
  const facilitator = new x402Facilitator();
  facilitator.register(network, new ExactSvmScheme(signer));
  facilitator.registerV1(["solana-devnet", "solana-testnet", "solana"], new ExactSvmSchemeV1(signer));
  return { facilitator, network, address: keyPair.address };
}

/// The library's facilitator signer for the account of `privateKey` on chain `chainId` at
/// `rpcUrl`: a viem wallet client with public actions, so that its reads and simulations come
/// from the facilitator's address. With `sends` false it refuses to send any transaction.
function facilitatorSigner(rpcUrl, privateKey, chainId, sends) {
  const chain = defineChain({
    id: chainId,
    name: `chain-${chainId}`,
    nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    rpcUrls: { default: { http: [rpcUrl] } },
  });
  const account = privateKeyToAccount(privateKey);
  // A local chain mines at once: poll for receipts often rather than every 4 s.
  const client = createWalletClient({ account, chain, transport: http(rpcUrl), pollingInterval: 100 }).extend(
    publicActions,
  );
  const refuse = async () => {
    throw new Error("this facilitator is verify-only and never sends transactions");
  };
  const writes = sends ? {} : { writeContract: refuse, sendTransaction: refuse };
  return toFacilitatorEvmSigner({ ...client, address: account.address, ...writes });
}

/// The payload and requirements a /verify or /settle body `body` carries (other fields, such
/// as x402Version, are ignored), or {error} saying what is wrong with it.
export function paymentRequest(body) {
  if (body === null || typeof body !== "object" || Array.isArray(body)) return { error: "is not an object" };
  for (const field of ["paymentPayload", "paymentRequirements"]) {
    const part = body[field];
    if (part === null || typeof part !== "object" || Array.isArray(part)) return { error: `has no ${field} object` };
  }
  return { paymentPayload: body.paymentPayload, paymentRequirements: body.paymentRequirements };
}

/// JSON text of `value`, bigints as decimal strings (library answers may carry bigints).
export function toJson(value) {
  return JSON.stringify(value, (_, v) => (typeof v === "bigint" ? v.toString() : v));
}
