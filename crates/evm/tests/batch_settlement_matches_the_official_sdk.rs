//! `batch-settlement` computed by us equals what the official SDK (`@x402/evm` 2.27) computes,
//! on the golden cases in `testdata/batch-settlement` (written by
//! `tools/interop/batch-golden.mjs`): channel ids, voucher / refund / claim-batch digests and
//! signatures, the ERC-3009 deposit nonce; every payload the SDK writes reads into our types and
//! writes back the same; its vouchers pass our local verification and its deposits' signatures
//! recover to the payer. Where node runs, the script is run again and must still print the
//! committed vectors, so the goldens cannot drift from the SDK.

use std::path::{Path, PathBuf};

use alloy::primitives::{Address, B256, Bytes, Signature, U256};
use alloy::signers::local::PrivateKeySigner;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use x402_evm::batch::{
    BatchDomain, BatchPayload, ChannelConfig, ChannelFunds, ChannelId, ChannelTerms,
    DepositAuthorization, DepositPayload, FacilitatorSettlePayload,
    PERMIT2_DEPOSIT_COLLECTOR_ADDRESS, PaymentResponseExtra, RequirementsExtra, VoucherClaim,
    VoucherFields, VoucherPurpose, channel_config_for, erc3009_deposit_nonce, sign_claim_batch,
    sign_refund, sign_voucher, verify_voucher_locally,
};
use x402_evm::eip712_domain;
use x402_proto::v2;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/batch-settlement")
}

/// Every committed golden case, by file name.
fn golden_cases() -> Vec<(String, Value)> {
    let mut cases: Vec<_> = std::fs::read_dir(golden_dir())
        .expect("testdata/batch-settlement exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, serde_json::from_str(&text).unwrap())
        })
        .collect();
    cases.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(cases.len() >= 3, "the golden cases are committed");
    cases
}

fn parse<T: DeserializeOwned>(json: &Value, what: &str) -> T {
    serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{what}: {e}\n{json:#}"))
}

/// `json` with every address in lower case: the SDK writes checksummed addresses, we write
/// them in lower case, and both mean the same.
fn addresses_lowered(json: &Value) -> Value {
    match json {
        Value::String(s) if s.len() == 42 && s.starts_with("0x") => {
            Value::String(s.to_ascii_lowercase())
        }
        Value::Array(items) => Value::Array(items.iter().map(addresses_lowered).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), addresses_lowered(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Reads `json` as `T` and requires it to write back as the same JSON (addresses aside).
fn round_trip<T: DeserializeOwned + Serialize>(json: &Value, what: &str) -> T {
    let typed: T = parse(json, what);
    let written = serde_json::to_value(&typed).unwrap();
    assert_eq!(
        written,
        addresses_lowered(json),
        "{what}: writing it back changed it"
    );
    typed
}

fn key(case: &Value, field: &str) -> PrivateKeySigner {
    case["input"][field].as_str().unwrap().parse().unwrap()
}

fn u128_of(value: &Value) -> u128 {
    value.as_str().unwrap().parse().unwrap()
}

fn b256_of(value: &Value) -> B256 {
    value.as_str().unwrap().parse().unwrap()
}

/// What one golden case says, read into our types.
struct Case {
    name: String,
    json: Value,
    requirements: v2::PaymentRequirements,
    domain: BatchDomain,
    payer: PrivateKeySigner,
    voucher_signer: PrivateKeySigner,
    authorizer: PrivateKeySigner,
    config: ChannelConfig,
    channel_id: ChannelId,
}

impl Case {
    fn read(name: &str, json: &Value) -> Self {
        let vectors = &json["vectors"];
        let requirements: v2::PaymentRequirements = parse(&vectors["requirements"], name);
        let payer = key(json, "payerKey");
        let voucher_signer = if json["input"]["voucherSignerKey"].is_string() {
            key(json, "voucherSignerKey")
        } else {
            payer.clone()
        };
        Self {
            name: name.to_owned(),
            json: json.clone(),
            domain: BatchDomain::new(requirements.network.evm_chain_id().unwrap()),
            requirements,
            authorizer: key(json, "receiverAuthorizerKey"),
            config: parse(&vectors["channelConfig"], name),
            channel_id: parse(&vectors["channelId"], name),
            payer,
            voucher_signer,
        }
    }

    fn vectors(&self) -> &Value {
        &self.json["vectors"]
    }

    fn input(&self) -> &Value {
        &self.json["input"]
    }

    fn payload(&self, which: &str) -> &Value {
        &self.vectors()["payloads"][which]
    }

    /// Requires `signature` to be our receiver-authorizer signature over `claims`.
    async fn assert_claims_signed(
        &self,
        claims: &[VoucherClaim],
        signature: &Option<Bytes>,
        what: &str,
    ) {
        let ours = sign_claim_batch(&self.authorizer, &self.domain, claims)
            .await
            .unwrap();
        assert_eq!(Some(ours), *signature, "{}: {what}", self.name);
    }

    fn funds(&self) -> ChannelFunds {
        ChannelFunds {
            balance: u128_of(&self.input()["balance"]),
            total_claimed: u128_of(&self.input()["totalClaimed"]),
        }
    }
}

#[tokio::test]
async fn channel_ids_digests_and_signatures_are_the_sdks() {
    for (name, json) in golden_cases() {
        let case = Case::read(&name, &json);
        let vectors = case.vectors();

        // The config the official client builds for the enhanced offer, and its id.
        let salt = b256_of(&case.input()["salt"]);
        let config = channel_config_for(
            &case.requirements,
            case.payer.address(),
            case.voucher_signer.address(),
            salt,
        )
        .unwrap();
        assert_eq!(config, case.config, "{name}: channel config");
        assert_eq!(
            x402_evm::batch::channel_id(&config, case.domain.chain_id()),
            case.channel_id,
            "{name}: channel id"
        );

        // The voucher for the next request: digest, and the same (deterministic) signature.
        let voucher: VoucherFields = parse(
            &json!({
                "channelId": vectors["voucher"]["channelId"],
                "maxClaimableAmount": vectors["voucher"]["maxClaimableAmount"],
                "signature": vectors["voucher"]["signature"],
            }),
            &name,
        );
        assert_eq!(
            case.domain
                .voucher_digest(&case.channel_id, voucher.max_claimable_amount),
            b256_of(&vectors["voucher"]["digest"]),
            "{name}: voucher digest"
        );
        let ours = sign_voucher(
            &case.voucher_signer,
            &case.domain,
            case.channel_id,
            voucher.max_claimable_amount,
        )
        .await
        .unwrap();
        assert_eq!(ours, voucher, "{name}: voucher signature");

        // The claim batch the server's channel manager sends, and its authorizer signature.
        let FacilitatorSettlePayload::Claim(claim) = parse(case.payload("claim"), &name) else {
            panic!("{name}: a claim payload");
        };
        assert_eq!(
            case.domain.claim_batch_digest(&claim.claims),
            b256_of(&vectors["claimBatchDigest"]),
            "{name}: claim batch digest"
        );
        case.assert_claims_signed(
            &claim.claims,
            &claim.claim_authorizer_signature,
            "claim batch",
        )
        .await;

        // The enriched refund: refund digest and signature, and the claims made first.
        let FacilitatorSettlePayload::Refund(refund) = parse(case.payload("enrichedRefund"), &name)
        else {
            panic!("{name}: an enriched refund payload");
        };
        let nonce: U256 = vectors["refund"]["nonce"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let amount = u128_of(&vectors["refund"]["amount"]);
        assert_eq!((refund.refund_nonce, refund.amount), (nonce, amount));
        assert_eq!(
            case.domain.refund_digest(&case.channel_id, nonce, amount),
            b256_of(&vectors["refund"]["digest"]),
            "{name}: refund digest"
        );
        assert_eq!(
            Some(
                sign_refund(
                    &case.authorizer,
                    &case.domain,
                    &case.channel_id,
                    nonce,
                    amount
                )
                .await
                .unwrap()
            ),
            refund.refund_authorizer_signature,
            "{name}: refund signature"
        );
        case.assert_claims_signed(
            &refund.claims.claims,
            &refund.claims.claim_authorizer_signature,
            "the refund's claims",
        )
        .await;

        assert_eq!(
            erc3009_deposit_nonce(&case.channel_id, &b256_of(&case.input()["depositSalt"])),
            b256_of(&vectors["erc3009DepositNonce"]),
            "{name}: ERC-3009 deposit nonce"
        );
    }
}

#[test]
fn every_payload_the_sdk_writes_reads_and_writes_back_the_same() {
    for (name, json) in golden_cases() {
        let case = Case::read(&name, &json);
        for which in ["voucher", "refund"] {
            let payload: BatchPayload =
                round_trip(case.payload(which), &format!("{name}: {which}"));
            assert_eq!(*payload.channel_config(), case.config);
        }
        for which in ["claim", "settle", "enrichedRefund"] {
            round_trip::<FacilitatorSettlePayload>(
                case.payload(which),
                &format!("{name}: {which}"),
            );
        }
        for which in ["deposit", "depositPermit2"] {
            let sample = &json["samples"][which];
            round_trip::<BatchPayload>(sample, &format!("{name}: {which}"));
            round_trip::<FacilitatorSettlePayload>(sample, &format!("{name}: {which} to settle"));
        }
        let extra: RequirementsExtra = round_trip(&case.vectors()["requirements"]["extra"], &name);
        assert_eq!(extra.receiver_authorizer, case.authorizer.address());
        assert_eq!(extra.withdraw_delay, case.config.withdraw_delay);
        assert_eq!(
            extra.min_deposit,
            Some(10 * u128::try_from(case.requirements.amount.0).unwrap()),
            "{name}: servers ask for ten times the price"
        );
    }
}

#[test]
fn the_sdks_vouchers_pass_local_verification() {
    for (name, json) in golden_cases() {
        let case = Case::read(&name, &json);
        let terms = ChannelTerms::from_requirements(&case.requirements).unwrap();
        let BatchPayload::Voucher(voucher) = parse(case.payload("voucher"), &name) else {
            panic!("{name}: a voucher payload");
        };
        let verified = verify_voucher_locally(
            &terms,
            &voucher.channel_config,
            &voucher.voucher,
            case.funds(),
            VoucherPurpose::Payment,
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(verified.payer, case.payer.address());

        // The refund's zero-charge voucher passes as a refund.
        let BatchPayload::Refund(refund) = parse(case.payload("refund"), &name) else {
            panic!("{name}: a refund payload");
        };
        assert_eq!(
            refund.voucher.max_claimable_amount,
            u128_of(&case.input()["chargedCumulativeAmount"])
        );
        assert_eq!(
            refund.amount,
            case.input()["refundAmount"]
                .as_str()
                .map(|a| a.parse().unwrap())
        );
        verify_voucher_locally(
            &terms,
            &refund.channel_config,
            &refund.voucher,
            case.funds(),
            VoucherPurpose::Refund,
        )
        .unwrap_or_else(|e| panic!("{name}: refund: {e}"));

        // Another chain's terms refuse the same voucher (the id binds the chain).
        let mut elsewhere = case.requirements.clone();
        elsewhere.network = x402_proto::Network::eip155(case.domain.chain_id() + 1);
        let other = ChannelTerms::from_requirements(&elsewhere).unwrap();
        let refused = verify_voucher_locally(
            &other,
            &voucher.channel_config,
            &voucher.voucher,
            case.funds(),
            VoucherPurpose::Payment,
        )
        .unwrap_err();
        assert_eq!(
            refused.reason(),
            x402_proto::ReasonCode::BATCH_SETTLEMENT_EVM_CHANNEL_ID_MISMATCH
        );
    }
}

/// Checks an SDK deposit: its voucher is the payer authorizer's, and its token authorization
/// (ERC-3009 to the collector with the derived nonce, or Permit2 to the Permit2 collector with
/// the channel as witness) recovers to the payer.
fn check_deposit(case: &Case, deposit: &DepositPayload, what: &str) {
    let terms = ChannelTerms::from_requirements(&case.requirements).unwrap();
    let funds = ChannelFunds {
        balance: deposit.deposit.amount,
        total_claimed: 0,
    };
    verify_voucher_locally(
        &terms,
        &deposit.channel_config,
        &deposit.voucher,
        funds,
        VoucherPurpose::Payment,
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    let payer = case.payer.address();
    let recovered = |signature: &Bytes, digest: B256| -> Address {
        Signature::from_raw(signature)
            .unwrap()
            .recover_address_from_prehash(&digest)
            .unwrap()
    };
    match &deposit.deposit.authorization {
        DepositAuthorization::Erc3009Authorization(auth) => {
            let extra = case.requirements.extra.as_ref().unwrap();
            let token_domain = eip712_domain(
                extra["name"].as_str().unwrap(),
                extra["version"].as_str().unwrap(),
                case.domain.chain_id(),
                case.config.token,
            );
            let digest = auth.digest(
                payer,
                deposit.deposit.amount,
                &case.channel_id,
                &token_domain,
            );
            assert_eq!(
                recovered(&auth.signature, digest),
                payer,
                "{what}: the ERC-3009 authorization is the payer's"
            );
        }
        DepositAuthorization::Permit2Authorization(auth) => {
            let permit = &auth.permit;
            assert_eq!(permit.from, payer);
            assert_eq!(permit.spender, PERMIT2_DEPOSIT_COLLECTOR_ADDRESS);
            assert_eq!(permit.witness.channel_id, case.channel_id);
            assert_eq!(permit.permitted.amount, U256::from(deposit.deposit.amount));
            assert_eq!(
                recovered(&auth.signature, auth.digest(case.domain.chain_id())),
                payer,
                "{what}: the Permit2 authorization is the payer's"
            );
        }
    }
}

fn check_samples(case: &Case, samples: &Value) {
    for (which, permit2) in [("deposit", false), ("depositPermit2", true)] {
        let what = format!("{}: {which}", case.name);
        let BatchPayload::Deposit(deposit) = parse(&samples[which], &what) else {
            panic!("{what}: a deposit payload");
        };
        assert_eq!(
            matches!(
                deposit.deposit.authorization,
                DepositAuthorization::Permit2Authorization(_)
            ),
            permit2,
            "{what}"
        );
        check_deposit(case, &deposit, &what);
    }
}

#[test]
fn the_sdks_deposits_are_signed_by_the_payer() {
    for (name, json) in golden_cases() {
        let case = Case::read(&name, &json);
        check_samples(&case, &json["samples"]);
    }
}

#[test]
fn amounts_above_uint128_and_malformed_channel_ids_are_refused_and_ids_are_lowered() {
    let (name, json) = golden_cases().remove(0);
    let case = Case::read(&name, &json);
    let voucher = case.payload("voucher");

    let mut above = voucher.clone();
    above["voucher"]["maxClaimableAmount"] =
        json!((U256::from(u128::MAX) + U256::from(1)).to_string());
    let error = serde_json::from_value::<BatchPayload>(above).unwrap_err();
    assert!(error.to_string().contains("uint128"), "{error}");

    let mut deposit = json["samples"]["deposit"].clone();
    deposit["deposit"]["amount"] = json!(U256::MAX.to_string());
    assert!(serde_json::from_value::<BatchPayload>(deposit).is_err());

    for bad in [
        case.channel_id
            .to_string()
            .trim_start_matches("0x")
            .to_owned(),
        format!("{}0", case.channel_id),
        format!("{}/..", &case.channel_id.to_string()[..62]),
    ] {
        let mut malformed = voucher.clone();
        malformed["voucher"]["channelId"] = json!(bad);
        assert!(
            serde_json::from_value::<BatchPayload>(malformed).is_err(),
            "{bad}"
        );
    }

    let mut upper = voucher.clone();
    let shouting = format!(
        "0x{}",
        case.channel_id.to_string()[2..].to_ascii_uppercase()
    );
    upper["voucher"]["channelId"] = json!(shouting);
    let read: BatchPayload = parse(&upper, &name);
    assert_eq!(read.voucher().channel_id, case.channel_id);
    assert_eq!(
        serde_json::to_value(&read).unwrap()["voucher"]["channelId"],
        json!(case.channel_id.to_string())
    );
}

#[test]
fn response_extras_read_as_the_sdk_writes_them() {
    let (name, json) = golden_cases().remove(0);
    let case = Case::read(&name, &json);
    // A voucher's PAYMENT-RESPONSE extra (server/settle.ts), and a deposit's with its state.
    let state = json!({
        "channelId": case.channel_id, "balance": "100000", "totalClaimed": "10000",
        "withdrawRequestedAt": 0, "refundNonce": "0", "chargedCumulativeAmount": "26000",
    });
    let extra: PaymentResponseExtra = round_trip(
        &json!({"channelState": state, "chargedAmount": "1000"}),
        &name,
    );
    let state = extra.snapshot.channel_state.unwrap();
    assert_eq!(
        (extra.charged_amount, state.charged_cumulative_amount),
        (Some(1000), Some(26_000))
    );
    // A refund's carries the state alone; a verify answer's extra is the state without the
    // charged amount (facilitator/voucher.ts).
    round_trip::<PaymentResponseExtra>(
        &json!({"channelState": {
            "channelId": case.channel_id, "balance": "25000", "totalClaimed": "25000",
            "withdrawRequestedAt": 1_764_000_000, "refundNonce": "1",
        }}),
        &name,
    );
    round_trip::<x402_evm::batch::VerifyExtra>(
        &json!({
            "channelId": case.channel_id, "balance": "100000", "totalClaimed": "10000",
            "withdrawRequestedAt": 0, "refundNonce": "0",
        }),
        &name,
    );
    // A corrective 402's offer extra (server/verify.ts).
    let mut corrective = case.vectors()["requirements"]["extra"].clone();
    corrective["channelState"] = json!({
        "channelId": case.channel_id, "balance": "100000", "totalClaimed": "10000",
        "withdrawRequestedAt": 0, "refundNonce": "0", "chargedCumulativeAmount": "25000",
    });
    corrective["voucherState"] = json!({
        "signedMaxClaimable": "25000",
        "signature": case.payload("refund")["voucher"]["signature"],
    });
    let extra: RequirementsExtra = round_trip(&corrective, &name);
    assert!(extra.other.is_empty(), "{:?}", extra.other);
    assert_eq!(
        extra
            .snapshot
            .channel_state
            .unwrap()
            .charged_cumulative_amount,
        Some(25_000)
    );
    assert_eq!(
        extra.snapshot.voucher_state.unwrap().signed_max_claimable,
        Some(25_000)
    );
    // Keys we do not know are kept.
    let mut unknown = case.vectors()["requirements"]["extra"].clone();
    unknown["futureKey"] = json!({"nested": [1, 2]});
    let extra: RequirementsExtra = round_trip(&unknown, &name);
    assert_eq!(extra.other.len(), 1);
}

/// Where node runs, the script still prints the committed vectors, and its fresh deposits
/// pass the same checks.
#[test]
fn the_goldens_have_not_drifted_from_the_sdk() {
    use std::io::Write;
    if std::process::Command::new("node")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("node is not installed: the golden vectors are not re-derived from the SDK");
        return;
    }
    let script = x402_testkit::official_sdks("@x402/evm").join("interop/batch-golden.mjs");
    for (name, json) in golden_cases() {
        let mut child = std::process::Command::new("node")
            .arg(&script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .expect("node runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&serde_json::to_vec(&json["input"]).unwrap())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{name}: the golden script failed");
        let live: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            live["vectors"], json["vectors"],
            "{name}: the SDK now computes other vectors (regenerate, see testdata/batch-settlement/README.md)"
        );
        check_samples(&Case::read(&name, &live), &live["samples"]);
    }
}

/// Not an assertion: how long one local voucher verification takes here (run with
/// `--release --nocapture` for the figure in `docs/benchmarks.md`).
#[test]
fn one_local_verification_costs() {
    let (name, json) = golden_cases().remove(0);
    let case = Case::read(&name, &json);
    let terms = ChannelTerms::from_requirements(&case.requirements).unwrap();
    let BatchPayload::Voucher(voucher) = parse(case.payload("voucher"), &name) else {
        panic!("a voucher payload");
    };
    let rounds = 2_000u32;
    let started = std::time::Instant::now();
    for _ in 0..rounds {
        let verified = verify_voucher_locally(
            &terms,
            std::hint::black_box(&voucher.channel_config),
            std::hint::black_box(&voucher.voucher),
            case.funds(),
            VoucherPurpose::Payment,
        );
        assert!(verified.is_ok());
    }
    let per = started.elapsed() / rounds;
    eprintln!("one local voucher verification: {per:?} (channel id, digest, ecrecover)");
}
