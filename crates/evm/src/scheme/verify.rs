//! Verifying a payment: the offline checks, the one batched chain read, and the diagnosis
//! of a simulated transfer that fails.

use super::*;

impl ExactEvmScheme {
    /// Verifies a payment as of `now` (Unix seconds), with the checks of the reference
    /// facilitator in its order: scheme, EIP-712 domain, network, signature, recipient,
    /// `validBefore` (with a 6 s buffer), `validAfter`, amount, asset is a contract, then a
    /// simulated transfer whose failure is diagnosed. The chain is asked once, in one batch
    /// (and a contract payer's settlement once more, simulated exactly as it will be sent).
    ///
    /// The signature is judged by the payer's code: without code, by ECDSA recovery; with
    /// code, by the wallet's ERC-1271 `isValidSignature`. An ERC-6492 signature of a wallet
    /// not deployed yet is accepted only from an allowed factory, and judged by simulating
    /// the deployment followed by `isValidSignature` and the transfer.
    pub async fn verify_at(
        &self,
        request: &PaymentRequest,
        now: u64,
    ) -> Result<VerifiedPayment, VerifyError> {
        let offline = self.check_offline(request, now)?;
        if offline.ecdsa_ok
            && let Some(failure) = offline.later_failure
        {
            return Err(failure);
        }
        let reads = self.read_chain(&offline).await?;
        let payer = offline.payload.authorization.from;
        let deployed = !reads.payer_code.is_empty();
        let mut deployment = None;
        let simulation = if deployed {
            if !reads.erc1271_ok {
                return Err(VerifyError::WalletRefusedSignature { payer });
            }
            reads.simulation
        } else if let Some(wanted) = &offline.signature.deployment {
            if !offline.factory_allowed {
                return Err(VerifyError::Eip6492FactoryNotAllowed {
                    factory: wanted.factory,
                });
            }
            let counterfactual = match reads.counterfactual {
                Some(Ok(counterfactual)) => counterfactual,
                Some(Err(reason)) => return Err(VerifyError::SimulationFailed { reason }),
                None => {
                    return Err(VerifyError::SimulationFailed {
                        reason: "counterfactual wallet was not simulated".into(),
                    });
                }
            };
            deployment = Some(wanted.clone());
            match counterfactual.deploy_failure {
                Some(reason) => Err(format!("the ERC-6492 factory call reverted: {reason}")),
                None if !counterfactual.erc1271_ok => {
                    return Err(VerifyError::WalletRefusedSignature { payer });
                }
                None => counterfactual.simulation,
            }
        } else if offline.ecdsa_ok {
            reads.simulation
        } else if offline.signature.inner.len() > 65 {
            // Longer than ECDSA: a smart-wallet signature for an address without a wallet.
            return Err(VerifyError::UndeployedSmartWallet { payer });
        } else {
            return Err(VerifyError::InvalidSignature { payer });
        };
        if let Some(failure) = offline.later_failure {
            return Err(failure);
        }
        if reads.asset_code.is_empty() {
            return Err(VerifyError::AssetNotContract {
                asset: offline.asset,
            });
        }
        if let Err(revert) = simulation {
            return Err(diagnose(
                &offline,
                reads.authorization_used,
                reads.balance,
                reads.name,
                reads.version,
                revert,
            ));
        }
        let verified = VerifiedPayment {
            network: request.wire_network().clone(),
            asset: offline.asset,
            settle_signature: offline.signature.inner,
            payload: offline.payload,
            contract_payer: deployed || deployment.is_some(),
            deployment,
        };
        if verified.is_contract_payer() {
            self.simulate_as_sent(&verified).await?;
        }
        Ok(verified)
    }

    /// A contract payer runs its own code in the transfer: the settlement is simulated once
    /// more exactly as it will be sent (the signer, its gas limit and fees), so the wallet
    /// cannot accept the batch's simulation (no gas limit, no gas price) and refuse the
    /// transaction. An address without code runs none, and is judged by the batch alone.
    async fn simulate_as_sent(&self, payment: &VerifiedPayment) -> Result<(), VerifyError> {
        let unavailable = |detail: String| VerifyError::ChainUnavailable { detail };
        let (to, input) = settlement_call(payment);
        let call = TransactionRequest::default().with_to(to).with_input(input);
        let call = self
            .as_sent(call, crate::sender::settlement_gas_limit(payment))
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        match self.provider.call(call).await {
            Ok(_) => Ok(()),
            Err(error) => Err(VerifyError::SimulationFailed {
                reason: revert_reason(error).map_err(|e| unavailable(e.to_string()))?,
            }),
        }
    }

    pub(super) fn check_offline(
        &self,
        request: &PaymentRequest,
        now: u64,
    ) -> Result<OfflineChecks, VerifyError> {
        let requirements = request.requirements();
        let (paid_scheme, paid_network) = request.accepted();
        if *paid_scheme != Scheme::EXACT {
            return Err(VerifyError::UnsupportedScheme {
                scheme: paid_scheme.clone(),
            });
        }
        if requirements.scheme != Scheme::EXACT {
            return Err(VerifyError::UnsupportedScheme {
                scheme: requirements.scheme.clone(),
            });
        }
        let domain = DomainExtra::from_extra(requirements.extra.as_ref())
            .ok_or(VerifyError::MissingEip712Domain)?;
        if !paid_network.same_as(&requirements.network) || paid_network.to_caip2().is_none() {
            return Err(VerifyError::NetworkMismatch {
                paid: paid_network.clone(),
                required: request.wire_network().clone(),
            });
        }
        if requirements.network.evm_chain_id() != Some(self.chain_id) {
            return Err(VerifyError::UnsupportedNetwork {
                network: request.wire_network().clone(),
            });
        }
        let asset = parse_address("asset", &requirements.asset)?;
        let pay_to = parse_address("payTo", &requirements.pay_to)?;
        let payload: ExactEvmPayload =
            serde_json::from_value(request.payload().clone()).map_err(|e| {
                VerifyError::InvalidPayload {
                    detail: e.to_string(),
                }
            })?;
        let authorization = &payload.authorization;

        let digest = authorization_digest(
            authorization,
            &eip712_domain(&domain.name, &domain.version, self.chain_id, asset),
        );
        let signature =
            PayerSignature::parse(&payload.signature).map_err(|e| VerifyError::InvalidPayload {
                detail: e.to_string(),
            })?;
        let ecdsa_ok = recover_low_s(&signature.inner, &digest) == Some(authorization.from);
        let factory_allowed = signature
            .deployment
            .as_ref()
            .is_some_and(|d| self.eip6492_allowed_factories.contains(&d.factory));

        let later_failure = if authorization.to != pay_to {
            Some(VerifyError::RecipientMismatch {
                to: authorization.to,
                pay_to,
            })
        } else if authorization.valid_before
            < U256::from(now.saturating_add(VALID_BEFORE_BUFFER_SECS))
        {
            Some(VerifyError::Expired {
                valid_before: authorization.valid_before,
                now,
            })
        } else if authorization.valid_after > U256::from(now) {
            Some(VerifyError::NotYetValid {
                valid_after: authorization.valid_after,
                now,
            })
        } else if authorization.value != requirements.amount.0 {
            Some(VerifyError::AmountMismatch {
                value: authorization.value,
                required: requirements.amount.0,
                x402_version: request.version(),
            })
        } else {
            None
        };
        Ok(OfflineChecks {
            asset,
            payload,
            domain,
            digest,
            signature,
            factory_allowed,
            ecdsa_ok,
            later_failure,
        })
    }

    /// Asks the chain everything verify may need in one JSON-RPC batch: both accounts' code,
    /// the simulated transfer, the diagnosis reads, the payer's ERC-1271 verdict and, for an
    /// allowed ERC-6492 wallet, a simulated deployment followed by that verdict and the
    /// transfer. Which of these decide depends on the payer's code, known only afterwards.
    pub(super) async fn read_chain(
        &self,
        offline: &OfflineChecks,
    ) -> Result<ChainReads, VerifyError> {
        let auth = &offline.payload.authorization;
        let asset = offline.asset;
        let latest = BlockNumberOrTag::Latest;
        let call_to = |to: Address, data: Vec<u8>| {
            let tx = TransactionRequest::default()
                .with_from(self.signer_address)
                .with_to(to)
                .with_input(data);
            (tx, latest)
        };
        let call = |data: Vec<u8>| call_to(asset, data);
        let mut batch = alloy::rpc::client::BatchRequest::new(self.provider.client());
        let unavailable = |e: TransportError| VerifyError::ChainUnavailable {
            detail: e.to_string(),
        };
        let payer_code = batch
            .add_call::<_, Bytes>("eth_getCode", &(auth.from, latest))
            .map_err(unavailable)?;
        let asset_code = batch
            .add_call::<_, Bytes>("eth_getCode", &(asset, latest))
            .map_err(unavailable)?;
        let transfer = transfer_calldata(auth, &offline.signature.inner);
        let simulation = batch
            .add_call::<_, Bytes>("eth_call", &call(transfer.clone()))
            .map_err(unavailable)?;
        let state_call = IEip3009::authorizationStateCall {
            authorizer: auth.from,
            nonce: auth.nonce,
        };
        let used = batch
            .add_call::<_, Bytes>("eth_call", &call(state_call.abi_encode()))
            .map_err(unavailable)?;
        let balance_call = IEip3009::balanceOfCall { account: auth.from };
        let balance = batch
            .add_call::<_, Bytes>("eth_call", &call(balance_call.abi_encode()))
            .map_err(unavailable)?;
        let name = batch
            .add_call::<_, Bytes>("eth_call", &call(IEip3009::nameCall {}.abi_encode()))
            .map_err(unavailable)?;
        let version = batch
            .add_call::<_, Bytes>("eth_call", &call(IEip3009::versionCall {}.abi_encode()))
            .map_err(unavailable)?;
        let check = IErc1271::isValidSignatureCall {
            hash: offline.digest,
            signature: offline.signature.inner.clone(),
        }
        .abi_encode();
        let erc1271 = batch
            .add_call::<_, Bytes>("eth_call", &call_to(auth.from, check.clone()))
            .map_err(unavailable)?;
        let counterfactual = match &offline.signature.deployment {
            Some(deployment) if offline.factory_allowed => {
                let step = |target: Address, data: Vec<u8>| IMulticall3::Call3 {
                    target,
                    allowFailure: true,
                    callData: data.into(),
                };
                let steps = IMulticall3::aggregate3Call {
                    calls: vec![
                        step(deployment.factory, deployment.factory_calldata.to_vec()),
                        step(auth.from, check),
                        step(asset, transfer),
                    ],
                };
                Some(
                    batch
                        .add_call::<_, Bytes>(
                            "eth_call",
                            &call_to(MULTICALL3_ADDRESS, steps.abi_encode()),
                        )
                        .map_err(unavailable)?,
                )
            }
            _ => None,
        };
        batch.send().await.map_err(unavailable)?;

        let payer_code = payer_code.await.map_err(unavailable)?;
        let asset_code = asset_code.await.map_err(unavailable)?;
        let simulation = match simulation.await {
            Ok(_) => Ok(()),
            Err(error) => Err(revert_reason(error).map_err(unavailable)?),
        };
        let used = match used.await {
            Ok(out) => IEip3009::authorizationStateCall::abi_decode_returns(&out).map_err(|_| ()),
            // A revert means the token has no EIP-3009; anything else says nothing about it.
            Err(error) => {
                revert_reason(error).map_err(unavailable)?;
                Err(())
            }
        };
        let balance = balance
            .await
            .ok()
            .and_then(|out: Bytes| IEip3009::balanceOfCall::abi_decode_returns(&out).ok());
        let name = name
            .await
            .ok()
            .and_then(|out: Bytes| IEip3009::nameCall::abi_decode_returns(&out).ok());
        let version = version
            .await
            .ok()
            .and_then(|out: Bytes| IEip3009::versionCall::abi_decode_returns(&out).ok());
        // A wallet that reverts, answers garbage or has no code refuses.
        let erc1271_ok = erc1271.await.is_ok_and(|out| is_erc1271_magic(&out));
        let counterfactual = match counterfactual {
            Some(waiter) => Some(match waiter.await {
                Ok(out) => counterfactual_reads(&out),
                Err(error) => Err(revert_reason(error).map_err(unavailable)?),
            }),
            None => None,
        };
        Ok(ChainReads {
            payer_code,
            asset_code,
            simulation,
            authorization_used: used,
            balance,
            name,
            version,
            erc1271_ok,
            counterfactual,
        })
    }
}

/// Reads the three results of the simulated deploy, `isValidSignature` and transfer.
pub(super) fn counterfactual_reads(out: &[u8]) -> Result<CounterfactualReads, String> {
    let results = IMulticall3::aggregate3Call::abi_decode_returns(out)
        .map_err(|e| format!("Multicall3 at {MULTICALL3_ADDRESS} answered badly: {e}"))?;
    let [deploy, check, transfer] = results.as_slice() else {
        return Err(format!(
            "Multicall3 returned {} results for 3 calls",
            results.len()
        ));
    };
    let failure = |result: &IMulticall3::Result| {
        alloy::sol_types::decode_revert_reason(&result.returnData)
            .unwrap_or_else(|| format!("reverted with {}", result.returnData))
    };
    Ok(CounterfactualReads {
        deploy_failure: (!deploy.success).then(|| failure(deploy)),
        erc1271_ok: check.success && is_erc1271_magic(&check.returnData),
        simulation: if transfer.success {
            Ok(())
        } else {
            Err(failure(transfer))
        },
    })
}

pub(super) fn parse_address(field: &'static str, value: &str) -> Result<Address, VerifyError> {
    value.parse().map_err(|_| VerifyError::InvalidRequirements {
        field,
        detail: format!("{value:?} is not an EVM address"),
    })
}

/// Recovers the signer of a 65-byte signature, refusing malleable (high-s) ones as tokens do.
pub(super) fn recover_low_s(signature: &[u8], digest: &B256) -> Option<Address> {
    let signature = Signature::from_raw(signature).ok()?;
    if signature.normalize_s().is_some() {
        return None;
    }
    signature.recover_address_from_prehash(digest).ok()
}

/// The revert reason of a failed `eth_call`, or the transport error if it did not revert.
///
/// Only an error that says the EVM reverted counts: rate limits, unknown blocks, "nonce too
/// low" or a facilitator out of gas money are faults of the chain or of us, not of the payment.
pub(super) fn revert_reason(error: TransportError) -> Result<String, TransportError> {
    match &error {
        RpcError::ErrorResp(payload)
            if NodeRefusal::classify(
                payload.code,
                &payload.message,
                payload.as_revert_data().is_some(),
            ) == NodeRefusal::Reverted =>
        {
            Ok(payload
                .as_revert_data()
                .and_then(|data: Bytes| alloy::sol_types::decode_revert_reason(&data))
                .unwrap_or_else(|| payload.message.to_string()))
        }
        _ => Err(error),
    }
}

/// Chooses the most specific reason for a failed simulation, in the reference order.
pub(super) fn diagnose(
    offline: &OfflineChecks,
    used: Result<bool, ()>,
    balance: Option<U256>,
    name: Option<String>,
    version: Option<String>,
    revert: String,
) -> VerifyError {
    let auth = &offline.payload.authorization;
    match used {
        Err(()) => {
            return VerifyError::Eip3009NotSupported {
                asset: offline.asset,
            };
        }
        Ok(true) => {
            return VerifyError::NonceAlreadyUsed {
                payer: auth.from,
                nonce: auth.nonce,
            };
        }
        Ok(false) => {}
    }
    if let Some(actual) = name.filter(|n| *n != offline.domain.name) {
        return VerifyError::TokenNameMismatch {
            actual,
            expected: offline.domain.name.clone(),
        };
    }
    if let Some(actual) = version.filter(|v| *v != offline.domain.version) {
        return VerifyError::TokenVersionMismatch {
            actual,
            expected: offline.domain.version.clone(),
        };
    }
    if let Some(balance) = balance.filter(|b| *b < auth.value) {
        return VerifyError::InsufficientBalance {
            payer: auth.from,
            balance,
            required: auth.value,
        };
    }
    VerifyError::SimulationFailed { reason: revert }
}
