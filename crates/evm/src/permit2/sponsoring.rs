//! Gas sponsoring with EIP-2612: a client's approval of Permit2 signed into the payment
//! (`eip2612GasSponsoring`), and the facilitator's check of one before `settleWithPermit`.

use super::*;

/// An `eip2612GasSponsoring` extension approving Permit2 for `requirements.amount` until
/// `deadline`, signed by `signer`, when `chain` says the payer's allowance is short of it
/// (`None` when it is enough, or the offer does not name the token's EIP-712 domain).
pub(crate) async fn eip2612_extension<S: Signer + Send + Sync>(
    signer: &S,
    chain: &alloy::providers::DynProvider,
    requirements: &v2::PaymentRequirements,
    deadline: U256,
) -> Result<Option<serde_json::Value>, SchemeSignError> {
    let fail = |what: String| SchemeSignError(format!("cannot sign the EIP-2612 approval: {what}"));
    let extra = requirements.extra.as_ref();
    let text = |key: &str| {
        extra
            .and_then(|e| e.get(key))
            .and_then(serde_json::Value::as_str)
    };
    let (Some(name), Some(version), Some(chain_id)) = (
        text("name"),
        text("version"),
        requirements.network.evm_chain_id(),
    ) else {
        return Ok(None);
    };
    let token: Address = requirements
        .asset
        .parse()
        .map_err(|_| fail("asset is not an address".into()))?;
    let owner = signer.address();
    let amount = requirements.amount.0;
    let read = |input: Vec<u8>| async {
        let answer = chain
            .call(
                TransactionRequest::default()
                    .to(token)
                    .input(Bytes::from(input).into()),
            )
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok::<U256, SchemeSignError>(U256::try_from_be_slice(&answer).unwrap_or_default())
    };
    let allowance = IPermit2Reads::allowanceCall {
        owner,
        spender: PERMIT2_ADDRESS,
    };
    if read(allowance.abi_encode()).await? >= amount {
        return Ok(None);
    }
    let nonce = read(IPermit2Reads::noncesCall { owner }.abi_encode()).await?;
    let permit = Permit {
        owner,
        spender: PERMIT2_ADDRESS,
        value: amount,
        nonce,
        deadline,
    };
    let domain = crate::payload::eip712_domain(name, version, chain_id, token);
    let digest = alloy::sol_types::SolStruct::eip712_signing_hash(&permit, &domain);
    let signature = sign_digest(signer, digest).await?;
    Ok(Some(serde_json::json!({
        EIP2612_GAS_SPONSORING: {"info": {
            "from": owner.to_checksum(None),
            "asset": token.to_checksum(None),
            "spender": PERMIT2_ADDRESS.to_checksum(None),
            "amount": amount.to_string(),
            "nonce": nonce.to_string(),
            "deadline": deadline.to_string(),
            "signature": signature.to_string(),
            "version": "1",
        }}
    })))
}

/// The key of the EIP-2612 gas-sponsoring extension in a payment's `extensions`.
pub(crate) const EIP2612_GAS_SPONSORING: &str = "eip2612GasSponsoring";

/// The EIP-2612 approval of Permit2 riding along with `request` (the `eip2612GasSponsoring`
/// extension), checked as the official facilitator checks it against the payer `owner`, the
/// token paid and the time: `None` when there is none.
pub(crate) fn eip2612_sponsoring(
    request: &PaymentRequest,
    owner: Address,
    token: Address,
) -> Result<Option<Permit2612Parts>, Refusal> {
    let PaymentRequest::V2 { payload, .. } = request else {
        return Ok(None);
    };
    let Some(info) = payload
        .extensions
        .as_ref()
        .and_then(|extensions| extensions.get(EIP2612_GAS_SPONSORING))
        .and_then(|extension| extension.get("info"))
    else {
        return Ok(None);
    };
    let text = |key: &str| info.get(key).and_then(serde_json::Value::as_str);
    // Clients echo the server's declaration ({description, version}) when they sign nothing:
    // an `info` without the approval's fields carries no approval.
    let fields = [
        "from",
        "asset",
        "spender",
        "amount",
        "nonce",
        "deadline",
        "signature",
        "version",
    ];
    if fields.iter().any(|key| text(key).is_none_or(str::is_empty)) {
        return Ok(None);
    }
    let malformed = || {
        refuse(
            ReasonCode::EIP2612_EXTENSION_FORMAT,
            "eip2612GasSponsoring.info needs from, asset, spender (addresses), amount, nonce, \
             deadline (decimal numbers), a 65-byte hex signature and a version",
        )
    };
    let address = |key: &str| text(key).and_then(|v| v.parse::<Address>().ok());
    let number = |key: &str| {
        text(key)
            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|v| U256::from_str_radix(v, 10).ok())
    };
    let (Some(from), Some(asset), Some(spender), Some(value), Some(_nonce), Some(deadline)) = (
        address("from"),
        address("asset"),
        address("spender"),
        number("amount"),
        number("nonce"),
        number("deadline"),
    ) else {
        return Err(malformed());
    };
    let signature = text("signature")
        .and_then(|v| v.parse::<Bytes>().ok())
        .filter(|s| s.len() == 65)
        .ok_or_else(malformed)?;
    if from != owner {
        return Err(refuse(
            ReasonCode::EIP2612_FROM_MISMATCH,
            "info.from is not the payer",
        ));
    }
    if asset != token {
        return Err(refuse(
            ReasonCode::EIP2612_ASSET_MISMATCH,
            "info.asset is not the token paid",
        ));
    }
    if spender != PERMIT2_ADDRESS {
        return Err(refuse(
            ReasonCode::EIP2612_SPENDER_NOT_PERMIT2,
            "info.spender is not Permit2",
        ));
    }
    if deadline < U256::from(crate::unix_now() + DEADLINE_BUFFER_SECS) {
        return Err(refuse(
            ReasonCode::EIP2612_DEADLINE_EXPIRED,
            "info.deadline has passed",
        ));
    }
    Ok(Some(Permit2612Parts {
        value,
        deadline,
        signature: alloy::primitives::FixedBytes::from_slice(&signature),
    }))
}

/// An EIP-2612 approval of Permit2: its value, deadline and 65-byte signature (r, s, v).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Permit2612Parts {
    pub(crate) value: U256,
    pub(crate) deadline: U256,
    pub(crate) signature: alloy::primitives::FixedBytes<65>,
}
