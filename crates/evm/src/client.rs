//! Building and signing payments, as the official clients do.

use alloy::primitives::{Address, B256, U256};
use alloy::signers::Signer;
use x402_proto::{Network, Scheme, v1, v2};

use crate::payload::{Authorization, ExactEvmPayload, authorization_digest, eip712_domain};
use crate::{VALID_AFTER_SKEW_SECS, scheme::DomainExtra};

/// Why a payment could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The requirements are for another scheme.
    #[error("scheme {0} cannot be paid with an EIP-3009 authorization; only \"exact\" can")]
    UnsupportedScheme(Scheme),
    /// The network is not an EVM chain.
    #[error("network {0} is not an EVM chain (eip155:<id>)")]
    UnsupportedNetwork(Network),
    /// `extra.name` / `extra.version` are missing.
    #[error("requirements lack extra.name / extra.version (the token's EIP-712 domain)")]
    MissingEip712Domain,
    /// An address field is not an address.
    #[error("requirements field {field} is not an EVM address: {value:?}")]
    InvalidAddress {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// The signer failed.
    #[error("signing failed: {0}")]
    Signer(#[from] alloy::signers::Error),
}

fn parse_address(field: &'static str, value: &str) -> Result<Address, SignError> {
    value.parse().map_err(|_| SignError::InvalidAddress {
        field,
        value: value.to_owned(),
    })
}

/// Signs an EIP-3009 authorization meeting `requirements`: a random 32-byte nonce,
/// `validAfter = now − 600 s` (clock skew), `validBefore = now + maxTimeoutSeconds`.
pub async fn sign_exact<S: Signer + ?Sized>(
    signer: &S,
    requirements: &v2::PaymentRequirements,
    now: u64,
) -> Result<ExactEvmPayload, SignError> {
    if requirements.scheme != Scheme::EXACT {
        return Err(SignError::UnsupportedScheme(requirements.scheme.clone()));
    }
    let chain_id = requirements
        .network
        .evm_chain_id()
        .ok_or_else(|| SignError::UnsupportedNetwork(requirements.network.clone()))?;
    let domain_extra = DomainExtra::from_extra(requirements.extra.as_ref())
        .ok_or(SignError::MissingEip712Domain)?;
    let token = parse_address("asset", &requirements.asset)?;
    let to = parse_address("payTo", &requirements.pay_to)?;
    let authorization = Authorization {
        from: signer.address(),
        to,
        value: requirements.amount.0,
        valid_after: U256::from(now.saturating_sub(VALID_AFTER_SKEW_SECS)),
        valid_before: U256::from(now.saturating_add(requirements.max_timeout_seconds)),
        nonce: B256::random(),
    };
    let domain = eip712_domain(&domain_extra.name, &domain_extra.version, chain_id, token);
    let digest = authorization_digest(&authorization, &domain);
    let signature = signer.sign_hash(&digest).await?;
    Ok(ExactEvmPayload {
        signature: signature.as_bytes().to_vec().into(),
        authorization,
    })
}

/// A complete v2 payment for `requirements` (echoed exactly as `accepted`).
pub async fn sign_payment<S: Signer + ?Sized>(
    signer: &S,
    requirements: &v2::PaymentRequirements,
    resource: Option<v2::ResourceInfo>,
    now: u64,
) -> Result<v2::PaymentPayload, SignError> {
    let exact = sign_exact(signer, requirements, now).await?;
    Ok(v2::PaymentPayload {
        x402_version: x402_proto::V2::default(),
        resource,
        accepted: requirements.clone(),
        payload: serde_json::to_value(&exact).unwrap_or_default(),
        extensions: None,
    })
}

/// A complete v1 payment for `requirements`.
pub async fn sign_payment_v1<S: Signer + ?Sized>(
    signer: &S,
    requirements: &v1::PaymentRequirements,
    now: u64,
) -> Result<v1::PaymentPayload, SignError> {
    let exact = sign_exact(signer, &requirements.to_v2(), now).await?;
    Ok(v1::PaymentPayload {
        x402_version: x402_proto::V1::default(),
        scheme: requirements.scheme.clone(),
        network: requirements.network.clone(),
        payload: serde_json::to_value(&exact).unwrap_or_default(),
    })
}

/// Declares a paying client's EVM scheme plug-in `$name` holding a signer: its `new`, and its
/// [`SchemeClient`](x402_proto::SchemeClient) impl, which pays the offers its `offers`
/// accepts with what its `signed` method signs.
macro_rules! evm_scheme_client {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug)]
        pub struct $name<S> {
            signer: S,
            /// A chain to read, when the client may (see `with_chain`).
            chain: Option<alloy::providers::DynProvider>,
        }

        impl<S> $name<S> {
            /// Pays with `signer`, reading no chain.
            pub fn new(signer: S) -> Self {
                Self {
                    signer,
                    chain: None,
                }
            }

            /// Lets the client read the chain at `rpc_url` where paying needs it (a Permit2
            /// payer's allowance: when it is short, the payment carries a signed EIP-2612
            /// approval of Permit2 that the facilitator settles with it).
            pub fn with_chain(mut self, rpc_url: alloy::transports::http::reqwest::Url) -> Self {
                use alloy::providers::Provider;
                self.chain = Some(
                    alloy::providers::ProviderBuilder::new()
                        .connect_http(rpc_url)
                        .erased(),
                );
                self
            }
        }

        impl<S> x402_proto::SchemeClient for $name<S>
        where
            S: alloy::signers::Signer + Send + Sync + std::fmt::Debug + 'static,
        {
            fn can_pay(&self, requirements: &x402_proto::v2::PaymentRequirements) -> bool {
                Self::offers(requirements)
            }

            fn payer(&self, _network: &x402_proto::Network) -> String {
                self.signer.address().to_checksum(None)
            }

            fn sign<'a>(
                &'a self,
                requirements: &'a x402_proto::v2::PaymentRequirements,
                now: u64,
            ) -> x402_proto::BoxFuture<
                'a,
                Result<x402_proto::SignedPayload, x402_proto::SchemeSignError>,
            > {
                Box::pin(self.signed(requirements, now))
            }

            fn charged(
                &self,
                _requirements: &x402_proto::v2::PaymentRequirements,
                receipt: &x402_proto::SettleResponse,
            ) -> Option<x402_proto::TokenAmount> {
                Self::receipt_charge(receipt)
            }
        }
    };
}
pub(crate) use evm_scheme_client;

evm_scheme_client!(
    /// `exact` on EVM chains as a paying client's scheme plug-in: pays `exact` offers on any
    /// `eip155` network whose requirements name the token's EIP-712 domain (EIP-3009); offers
    /// that ask for Permit2 are [`ExactPermit2Client`](crate::exact_permit2::ExactPermit2Client)'s.
    ExactEvmClient
);

impl<S> ExactEvmClient<S> {
    /// An `exact` payment moves its price, whatever its receipt says.
    fn receipt_charge(_receipt: &x402_proto::SettleResponse) -> Option<x402_proto::TokenAmount> {
        None
    }

    fn offers(requirements: &v2::PaymentRequirements) -> bool {
        requirements.scheme == Scheme::EXACT
            && requirements.network.evm_chain_id().is_some()
            && !crate::exact_permit2::offers_permit2(requirements)
    }
}

impl<S: Signer + Send + Sync> ExactEvmClient<S> {
    async fn signed(
        &self,
        requirements: &v2::PaymentRequirements,
        now: u64,
    ) -> Result<x402_proto::SignedPayload, x402_proto::SchemeSignError> {
        let exact = sign_exact(&self.signer, requirements, now)
            .await
            .map_err(|e| x402_proto::SchemeSignError(e.to_string()))?;
        let auth = &exact.authorization;
        signed_payload(&exact, auth.nonce.to_string(), auth.valid_before)
    }
}

/// What a client's ledger keeps of a signed `payload`: it, the `nonce` it spends once, and the
/// last second it can settle.
pub(crate) fn signed_payload(
    payload: &impl serde::Serialize,
    nonce: String,
    valid_before: alloy::primitives::U256,
) -> Result<x402_proto::SignedPayload, x402_proto::SchemeSignError> {
    Ok(x402_proto::SignedPayload {
        nonce: Some(nonce),
        valid_before: Some(u64::try_from(valid_before).unwrap_or(u64::MAX)),
        extensions: None,
        locks: None,
        channel: None,
        payload: serde_json::to_value(payload)
            .map_err(|e| x402_proto::SchemeSignError(e.to_string()))?,
    })
}
