// Prints golden payloads of the official @x402/svm 2.27 client, made against the local Solana
// chain (tools/solana): one v2 payment with a seller's memo, one v2 with the client's random
// memo, one v1. The Rust tests of crates/svm decode them, run our verify's local checks on them
// and rebuild the memo-fixed one byte for byte.
//
//   node interop/svm-golden.mjs > ../testdata/svm/official-exact.json

import { createKeyPairSignerFromBytes, getBase58Encoder } from "@solana/kit";
import { ExactSvmScheme as ExactSvmClient } from "@x402/svm/exact/client";
import { ExactSvmSchemeV1 as ExactSvmClientV1 } from "@x402/svm/exact/v1/client";
import { startFront } from "../solana/front.mjs";

const front = await startFront(["--seed", "svm-golden", "--payers", "1"]);
try {
  const s = front.state;
  const signer = await createKeyPairSignerFromBytes(getBase58Encoder().encode(s.payerKeys[0]));
  const requirements = (extra) => ({
    scheme: "exact", network: s.network, amount: "1000", asset: s.mint, payTo: s.payTo,
    maxTimeoutSeconds: 60, extra: { feePayer: s.feePayer, ...extra },
  });
  const client = new ExactSvmClient(signer, { rpcUrl: s.rpcUrl });
  const withMemo = requirements({ memo: "order-42" });
  const randomMemo = requirements({});
  const v1Requirements = {
    scheme: "exact", network: s.v1Network, maxAmountRequired: "2500", resource: "http://127.0.0.1/run",
    description: "test", mimeType: "application/json", payTo: s.payTo, maxTimeoutSeconds: 60,
    asset: s.mint, extra: { feePayer: s.feePayer },
  };
  const v1 = await new ExactSvmClientV1(signer, { rpcUrl: s.rpcUrl }).createPaymentPayload(1, v1Requirements);
  const golden = {
    chain: {
      network: s.network, v1Network: s.v1Network, mint: s.mint, decimals: s.decimals,
      tokenProgram: s.tokenProgram, feePayer: s.feePayer, payTo: s.payTo, payer: s.payers[0],
      payerTokenAccount: s.payerTokenAccounts[0], payToTokenAccount: s.payToTokenAccount,
      // Keys of the local chain only, so the tests can rebuild and co-sign.
      payerKey: s.payerKeys[0], feePayerKey: s.feePayerKey,
    },
    v2Memo: { requirements: withMemo, payload: (await client.createPaymentPayload(2, withMemo)).payload },
    v2Random: { requirements: randomMemo, payload: (await client.createPaymentPayload(2, randomMemo)).payload },
    v1: { requirements: v1Requirements, payload: v1 },
  };
  process.stdout.write(JSON.stringify(golden, null, 2) + "\n");
} finally {
  front.stop();
}
