//! x402 version 1 messages.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Network, Scheme, TokenAmount, V1, v2};

/// One way to pay that a v1 server accepts. The resource is described in each requirement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequirements {
    /// The payment scheme (`exact`).
    pub scheme: Scheme,
    /// The v1 network name (`base`, `base-sepolia`).
    pub network: Network,
    /// The price in the asset's atomic units.
    pub max_amount_required: TokenAmount,
    /// The URL of the resource.
    pub resource: String,
    /// What it is, for people.
    #[serde(default)]
    pub description: String,
    /// The media type of what the payment buys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mime_type: Option<String>,
    /// A description of the resource's input and output, used for discovery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_schema: Option<Value>,
    /// Who is paid.
    pub pay_to: String,
    /// How long a signed payment stays valid.
    pub max_timeout_seconds: u64,
    /// The asset: a token address on EVM chains.
    pub asset: String,
    /// Scheme-specific data; for `exact` on EVM the token's EIP-712 `name` and `version`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra: Option<Value>,
}

impl PaymentRequirements {
    /// The same requirements in v2 form, the network as CAIP-2 where the name is known.
    pub fn to_v2(&self) -> v2::PaymentRequirements {
        v2::PaymentRequirements {
            scheme: self.scheme.clone(),
            network: self
                .network
                .to_caip2()
                .unwrap_or_else(|| self.network.clone()),
            amount: self.max_amount_required,
            asset: self.asset.clone(),
            pay_to: self.pay_to.clone(),
            max_timeout_seconds: self.max_timeout_seconds,
            extra: self.extra.clone(),
        }
    }

    /// v1 requirements for v2 ones, describing `resource`. `None` when the network has no
    /// v1 name, so v1 clients could not pay it anyway.
    pub fn from_v2(
        requirements: &v2::PaymentRequirements,
        resource: &v2::ResourceInfo,
    ) -> Option<Self> {
        Some(Self {
            scheme: requirements.scheme.clone(),
            network: requirements.network.to_v1_name()?,
            max_amount_required: requirements.amount,
            resource: resource.url.clone(),
            description: resource.description.clone().unwrap_or_default(),
            mime_type: resource.mime_type.clone(),
            output_schema: None,
            pay_to: requirements.pay_to.clone(),
            max_timeout_seconds: requirements.max_timeout_seconds,
            asset: requirements.asset.clone(),
            extra: requirements.extra.clone(),
        })
    }
}

/// The challenge a v1 server sends as the JSON body of a 402.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentRequired {
    /// Always 1.
    pub x402_version: V1,
    /// Why payment is required (or why the last one was refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The accepted ways to pay.
    pub accepts: Vec<PaymentRequirements>,
    /// The payer of a refused payment, when the server names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payer: Option<String>,
}

/// A signed v1 payment, in the `X-PAYMENT` header.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PaymentPayload {
    /// Always 1.
    pub x402_version: V1,
    /// The scheme the client chose.
    pub scheme: Scheme,
    /// The v1 network name the client chose.
    pub network: Network,
    /// The scheme's signed data.
    pub payload: Value,
}
