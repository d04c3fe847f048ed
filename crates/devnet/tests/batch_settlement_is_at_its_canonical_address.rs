//! The devnet places the `batch-settlement` escrow and its deposit collectors where official
//! clients look for them; the escrow's channel ids and digests are the EIP-712 hashes computed
//! off-chain under its domain ("x402 Batch Settlement", "1", the chain, its canonical address),
//! and a deposit signed for the EIP-3009 collector into the devnet token, a claim and a settle
//! pay the receiver exactly what was claimed.

use alloy::network::TransactionBuilder;
use alloy::primitives::{Address, B256, Bytes, U256, keccak256};
use alloy::providers::Provider;
use alloy::rpc::types::TransactionRequest;
use alloy::signers::SignerSync;
use alloy::signers::local::PrivateKeySigner;
use alloy::sol_types::{SolCall, SolStruct, SolValue, eip712_domain};
use x402_devnet::{
    BATCH_SETTLEMENT_ADDRESS, Devnet, DevnetConfig, ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
    PERMIT2_ADDRESS, PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
};

alloy::sol! {
    struct ChannelConfig { address payer; address payerAuthorizer; address receiver; address receiverAuthorizer; address token; uint40 withdrawDelay; bytes32 salt; }
    struct Voucher { ChannelConfig channel; uint128 maxClaimableAmount; }
    struct VoucherClaim { Voucher voucher; bytes signature; uint128 totalClaimed; }

    interface IBatchSettlement {
        function deposit(ChannelConfig config, uint128 amount, address collector, bytes collectorData) external;
        function claimWithSignature(VoucherClaim[] voucherClaims, bytes authorizerSignature) external;
        function settle(address receiver, address token) external;
        function getChannelId(ChannelConfig config) external view returns (bytes32);
        function getVoucherDigest(bytes32 channelId, uint128 maxClaimableAmount) external view returns (bytes32);
        function getClaimBatchDigest(VoucherClaim[] voucherClaims) external view returns (bytes32);
        function channels(bytes32 channelId) external view returns (uint128 balance, uint128 totalClaimed);
    }

    interface IDepositCollector {
        function BATCH_SETTLEMENT() external view returns (address);
        function PERMIT2() external view returns (address);
    }
}

/// What the parties sign (EIP-712 structs).
mod signed {
    alloy::sol! {
        struct Voucher { bytes32 channelId; uint128 maxClaimableAmount; }
        struct ClaimEntry { bytes32 channelId; uint128 maxClaimableAmount; uint128 totalClaimed; }
        struct ClaimBatch { ClaimEntry[] claims; }
        struct ReceiveWithAuthorization { address from; address to; uint256 value; uint256 validAfter; uint256 validBefore; bytes32 nonce; }
    }
}

const CHAIN_ID: u64 = 84532;

/// What the view `call` of the escrow returns.
async fn escrow<C: SolCall>(devnet: &Devnet, call: C) -> C::Return {
    view(devnet, BATCH_SETTLEMENT_ADDRESS, call).await
}

async fn view<C: SolCall>(devnet: &Devnet, to: Address, call: C) -> C::Return {
    let tx = TransactionRequest::default()
        .with_to(to)
        .with_input(call.abi_encode());
    let out = devnet.provider().call(tx).await.unwrap();
    C::abi_decode_returns(&out).unwrap()
}

/// Sends `call` to the escrow from the facilitator account and asserts that it succeeded.
async fn send<C: SolCall>(devnet: &Devnet, call: C) {
    let tx = TransactionRequest::default()
        .with_to(BATCH_SETTLEMENT_ADDRESS)
        .with_input(call.abi_encode());
    let receipt = devnet
        .provider()
        .send_transaction(tx)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status(), "{} reverted", C::SIGNATURE);
}

fn sign(signer: &PrivateKeySigner, digest: B256) -> Bytes {
    Bytes::from(signer.sign_hash_sync(&digest).unwrap().as_bytes().to_vec())
}

#[tokio::test]
async fn the_escrow_and_its_collectors_answer_at_their_addresses_and_settle_a_claim() {
    let devnet = Devnet::start(DevnetConfig {
        chain_id: CHAIN_ID,
        ..DevnetConfig::default()
    })
    .await
    .unwrap();
    for address in [
        BATCH_SETTLEMENT_ADDRESS,
        ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
        PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
    ] {
        assert!(devnet.has_code(address).await.unwrap(), "{address}");
    }
    for collector in [
        ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
        PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
    ] {
        let named = view(
            &devnet,
            collector,
            IDepositCollector::BATCH_SETTLEMENTCall {},
        )
        .await;
        assert_eq!(named, BATCH_SETTLEMENT_ADDRESS);
    }
    let permit2 = view(
        &devnet,
        PERMIT2_DEPOSIT_COLLECTOR_ADDRESS,
        IDepositCollector::PERMIT2Call {},
    )
    .await;
    assert_eq!(permit2, PERMIT2_ADDRESS);

    let domain = eip712_domain! {
        name: "x402 Batch Settlement",
        version: "1",
        chain_id: CHAIN_ID,
        verifying_contract: BATCH_SETTLEMENT_ADDRESS,
    };
    let payer = devnet.payers()[0].clone();
    let facilitator = devnet.facilitator().clone();
    let receiver = devnet.pay_to().address;
    let token = devnet.token().clone();
    let config = ChannelConfig {
        payer: payer.address,
        payerAuthorizer: payer.address,
        receiver,
        receiverAuthorizer: facilitator.address,
        token: token.address,
        withdrawDelay: alloy::primitives::aliases::U40::from(900u64),
        salt: B256::repeat_byte(7),
    };
    let channel_id = escrow(
        &devnet,
        IBatchSettlement::getChannelIdCall {
            config: config.clone(),
        },
    )
    .await;
    assert_eq!(channel_id, config.eip712_signing_hash(&domain));

    // The payer's deposit: an EIP-3009 authorization to the collector whose nonce binds the
    // channel, submitted by the facilitator.
    let salt = U256::from(42);
    let authorization = signed::ReceiveWithAuthorization {
        from: payer.address,
        to: ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
        value: U256::from(1_000),
        validAfter: U256::ZERO,
        validBefore: U256::MAX,
        nonce: keccak256((channel_id, salt).abi_encode()),
    };
    let token_domain = eip712_domain! {
        name: token.name.clone(),
        version: token.version.clone(),
        chain_id: CHAIN_ID,
        verifying_contract: token.address,
    };
    let deposit_signature = sign(
        &payer.signer,
        authorization.eip712_signing_hash(&token_domain),
    );
    let collector_data = (
        authorization.validAfter,
        authorization.validBefore,
        salt,
        deposit_signature,
    )
        .abi_encode_params();
    send(
        &devnet,
        IBatchSettlement::depositCall {
            config: config.clone(),
            amount: 1_000,
            collector: ERC3009_DEPOSIT_COLLECTOR_ADDRESS,
            collectorData: collector_data.into(),
        },
    )
    .await;
    let state = escrow(
        &devnet,
        IBatchSettlement::channelsCall {
            channelId: channel_id,
        },
    )
    .await;
    assert_eq!((state.balance, state.totalClaimed), (1_000, 0));

    // A voucher up to 400, of which the receiver claims 350 with its authorizer's signature.
    let voucher = signed::Voucher {
        channelId: channel_id,
        maxClaimableAmount: 400,
    };
    let voucher_digest = escrow(
        &devnet,
        IBatchSettlement::getVoucherDigestCall {
            channelId: channel_id,
            maxClaimableAmount: 400,
        },
    )
    .await;
    assert_eq!(voucher_digest, voucher.eip712_signing_hash(&domain));
    let claims = vec![VoucherClaim {
        voucher: Voucher {
            channel: config.clone(),
            maxClaimableAmount: 400,
        },
        signature: sign(&payer.signer, voucher_digest),
        totalClaimed: 350,
    }];
    let batch = signed::ClaimBatch {
        claims: vec![signed::ClaimEntry {
            channelId: channel_id,
            maxClaimableAmount: 400,
            totalClaimed: 350,
        }],
    };
    let batch_digest = escrow(
        &devnet,
        IBatchSettlement::getClaimBatchDigestCall {
            voucherClaims: claims.clone(),
        },
    )
    .await;
    assert_eq!(batch_digest, batch.eip712_signing_hash(&domain));

    let before = devnet.balance_of(token.address, receiver).await.unwrap();
    send(
        &devnet,
        IBatchSettlement::claimWithSignatureCall {
            voucherClaims: claims,
            authorizerSignature: sign(&facilitator.signer, batch_digest),
        },
    )
    .await;
    send(
        &devnet,
        IBatchSettlement::settleCall {
            receiver,
            token: token.address,
        },
    )
    .await;
    let after = devnet.balance_of(token.address, receiver).await.unwrap();
    assert_eq!(after - before, U256::from(350));
    assert_eq!(
        devnet
            .balance_of(token.address, BATCH_SETTLEMENT_ADDRESS)
            .await
            .unwrap(),
        U256::from(650)
    );
}
