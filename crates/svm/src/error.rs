//! Why a Solana payment was refused, and the one place refusals become wire reason codes.

use x402_proto::ReasonCode;

/// Why a payment failed verification. Each variant is one refusal of the official facilitator
/// (`@x402/svm` 2.27), met in the same order; [`VerifyError::reason`] gives its code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The payment or the requirements name another scheme than `exact`.
    #[error("scheme {0} is not supported here; use \"exact\"")]
    UnsupportedScheme(String),
    /// The payment names another network than the requirements.
    #[error("payment is for network {paid} but the requirements are for {required}")]
    NetworkMismatch {
        /// The network in the payment.
        paid: String,
        /// The network in the requirements.
        required: String,
    },
    /// `extra.feePayer` is missing from the requirements, or not a string.
    #[error("requirements lack extra.feePayer, the facilitator's fee payer address")]
    MissingFeePayer,
    /// `extra.feePayer` is not a key this facilitator holds.
    #[error("extra.feePayer {0} is not a fee payer of this facilitator; take it from /supported")]
    FeePayerNotManaged(String),
    /// The payload is not a base64 Solana transaction.
    #[error("payload.transaction is not a base64 Solana transaction: {0}")]
    Undecodable(String),
    /// The message asks for more signers than allowed.
    #[error("the transaction requires {required} signatures; at most {max} are allowed")]
    ExcessiveSigners {
        /// Signatures the message requires.
        required: u8,
        /// The most allowed.
        max: u8,
    },
    /// The transaction's first account (its fee payer) is not `extra.feePayer`.
    #[error("the transaction's fee payer (account 0) is {actual}, not extra.feePayer {expected}")]
    FeePayerMismatch {
        /// Account 0.
        actual: String,
        /// `extra.feePayer`.
        expected: String,
    },
    /// A required signer other than the fee payer did not sign the message.
    #[error("signer {0} did not sign the transaction message")]
    SignatureInvalid(String),
    /// The transaction loads accounts through address lookup tables, which this facilitator
    /// does not resolve.
    #[error("the transaction uses address lookup tables, which are not accepted here")]
    AddressLookupTables,
    /// Not 3 to 7 (v1: 6) instructions.
    #[error("the transaction has {count} instructions; 3 to {max} are accepted")]
    InstructionsLength {
        /// Instructions in the transaction.
        count: usize,
        /// The most accepted.
        max: usize,
    },
    /// The first instruction is not a Compute Budget `SetComputeUnitLimit`.
    #[error("instruction 0 must be ComputeBudget SetComputeUnitLimit")]
    ComputeLimitInstruction,
    /// The compute-unit limit is above this facilitator's cap.
    #[error("the compute-unit limit {units} is above the cap {max}")]
    ComputeLimitTooHigh {
        /// The limit set.
        units: u32,
        /// The cap.
        max: u32,
    },
    /// The second instruction is not a Compute Budget `SetComputeUnitPrice`.
    #[error("instruction 1 must be ComputeBudget SetComputeUnitPrice")]
    ComputePriceInstruction,
    /// The compute-unit price is above this facilitator's cap.
    #[error("the compute-unit price {micro_lamports} µlamports is above the cap {max}")]
    ComputePriceTooHigh {
        /// The price set.
        micro_lamports: u64,
        /// The cap.
        max: u64,
    },
    /// The third instruction is not an SPL Token or Token-2022 `TransferChecked`.
    #[error("instruction 2 must be an SPL Token or Token-2022 TransferChecked")]
    NoTransferInstruction,
    /// The transfer's authority is one of the facilitator's fee payers.
    #[error("the transfer's authority {0} is a fee payer of this facilitator")]
    FeePayerTransferringFunds(String),
    /// The transfer moves another mint than the requirements' asset.
    #[error("the transfer moves mint {actual}, not the asset {expected}")]
    MintMismatch {
        /// The mint transferred.
        actual: String,
        /// The requirements' asset.
        expected: String,
    },
    /// The transfer's destination is not payTo's associated token account.
    #[error("the transfer pays {actual}, not payTo's associated token account {expected}")]
    RecipientMismatch {
        /// The destination.
        actual: String,
        /// payTo's associated token account.
        expected: String,
    },
    /// The transfer's amount is not the required amount.
    #[error(
        "the transfer moves {actual} atomic units; the requirements ask for exactly {expected}"
    )]
    AmountMismatch {
        /// The amount transferred.
        actual: u64,
        /// The amount required.
        expected: String,
    },
    /// An instruction after the transfer is neither Memo nor Lighthouse.
    #[error("instruction {index} must be a Memo or Lighthouse instruction")]
    UnknownInstruction {
        /// Its index in the transaction.
        index: usize,
    },
    /// The seller asked for a memo and the transaction has not exactly one.
    #[error("the transaction must carry exactly one memo; it has {0}")]
    MemoCount(usize),
    /// The memo is not the seller's.
    #[error("the transaction's memo is not extra.memo")]
    MemoMismatch,
    /// The chain refused the transaction in simulation.
    #[error("Simulation failed: {0}")]
    SimulationFailed(String),
    /// The chain could not be asked (an RPC failure): not the payment's fault.
    #[error("the Solana RPC failed: {0}")]
    Rpc(String),
}

impl VerifyError {
    /// The wire reason code of this refusal under x402 version `version`, as the official
    /// facilitator writes it (v1 leaves the prefix off a few codes).
    pub fn reason(&self, version: u8) -> ReasonCode {
        let v1 = version == 1;
        let code = match self {
            Self::UnsupportedScheme(_) if v1 => "unsupported_scheme",
            Self::UnsupportedScheme(_) => "invalid_exact_svm_unsupported_scheme",
            Self::NetworkMismatch { .. } if v1 => "network_mismatch",
            Self::NetworkMismatch { .. } => "invalid_exact_svm_network_mismatch",
            Self::MissingFeePayer => "invalid_exact_svm_payload_missing_fee_payer",
            Self::FeePayerNotManaged(_) if v1 => "fee_payer_not_managed_by_facilitator",
            Self::FeePayerNotManaged(_) => "invalid_exact_svm_fee_payer_not_managed_by_facilitator",
            Self::Undecodable(_) => "invalid_exact_svm_payload_transaction_could_not_be_decoded",
            Self::ExcessiveSigners { .. } => "invalid_exact_svm_payload_excessive_signers",
            Self::FeePayerMismatch { .. } => "invalid_exact_svm_fee_payer_mismatch",
            Self::SignatureInvalid(_) => "invalid_exact_svm_payload_signature_invalid",
            Self::AddressLookupTables => "invalid_exact_svm_smart_wallet_alt_resolution_failed",
            Self::InstructionsLength { .. } => {
                "invalid_exact_svm_payload_transaction_instructions_length"
            }
            Self::ComputeLimitInstruction => {
                "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction"
            }
            Self::ComputeLimitTooHigh { .. } => {
                "invalid_exact_svm_payload_transaction_instructions_compute_limit_instruction_too_high"
            }
            Self::ComputePriceInstruction => {
                "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction"
            }
            Self::ComputePriceTooHigh { .. } => {
                "invalid_exact_svm_payload_transaction_instructions_compute_price_instruction_too_high"
            }
            Self::NoTransferInstruction => "invalid_exact_svm_payload_no_transfer_instruction",
            Self::FeePayerTransferringFunds(_) => {
                "invalid_exact_svm_payload_transaction_fee_payer_transferring_funds"
            }
            Self::MintMismatch { .. } => "invalid_exact_svm_payload_mint_mismatch",
            Self::RecipientMismatch { .. } => "invalid_exact_svm_payload_recipient_mismatch",
            Self::AmountMismatch { .. } => "invalid_exact_svm_payload_amount_mismatch",
            Self::UnknownInstruction { index } => match index {
                3 => "invalid_exact_svm_payload_unknown_fourth_instruction",
                4 => "invalid_exact_svm_payload_unknown_fifth_instruction",
                5 => "invalid_exact_svm_payload_unknown_sixth_instruction",
                6 => "invalid_exact_svm_payload_unknown_seventh_instruction",
                _ => "invalid_exact_svm_payload_unknown_optional_instruction",
            },
            Self::MemoCount(_) => "invalid_exact_svm_payload_memo_count",
            Self::MemoMismatch => "invalid_exact_svm_payload_memo_mismatch",
            Self::SimulationFailed(_) if v1 => "transaction_simulation_failed",
            Self::SimulationFailed(_) => "invalid_exact_svm_transaction_simulation_failed",
            Self::Rpc(_) => "unexpected_verify_error",
        };
        ReasonCode::from_static(code)
    }

    /// Whether this is a fault of ours or the chain's rather than a refusal of the payment.
    pub fn is_internal(&self) -> bool {
        matches!(self, Self::Rpc(_))
    }
}
