//! x402 version 2 messages.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Network, Scheme, TokenAmount, V2};

/// The resource a payment is for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceInfo {
    /// Its URL.
    pub url: String,
    /// What it is, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The media type of what the payment buys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
}

/// One way to pay that a server accepts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// The payment scheme (`exact`).
    pub scheme: Scheme,
    /// The CAIP-2 network (`eip155:8453`).
    pub network: Network,
    /// The price in the asset's atomic units.
    pub amount: TokenAmount,
    /// The asset: a token address on EVM chains, a mint on Solana.
    pub asset: String,
    /// Who is paid.
    pub pay_to: String,
    /// How long a signed payment stays valid.
    pub max_timeout_seconds: u64,
    /// Scheme-specific data; for `exact` on EVM the token's EIP-712 `name` and `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

/// The challenge a server sends with a 402, in the `PAYMENT-REQUIRED` header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Always 2.
    pub x402_version: V2,
    /// Why payment is required (or why the last one was refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What is being paid for.
    pub resource: ResourceInfo,
    /// The accepted ways to pay, in the server's order of preference.
    pub accepts: Vec<PaymentRequirements>,
    /// Extensions offered by the server, keyed by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
}

/// A signed payment, in the `PAYMENT-SIGNATURE` header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// Always 2.
    pub x402_version: V2,
    /// The resource paid for, echoed from the challenge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceInfo>,
    /// The requirements the client chose, copied exactly from the challenge.
    pub accepted: PaymentRequirements,
    /// The scheme's signed data.
    pub payload: Value,
    /// Extensions echoed (and possibly extended) by the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Value>,
}
