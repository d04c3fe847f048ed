//! The official facilitator's local checks of a payment, in its order.

use serde_json::Value;
use solana_message::compiled_instruction::CompiledInstruction;
use solana_pubkey::Pubkey;
use spl_token_interface::instruction::TokenInstruction;
use x402_proto::{PaymentRequest, TokenAmount, U256};

use crate::{
    COMPUTE_BUDGET_PROGRAM, DecodedPayment, LIGHTHOUSE_PROGRAM,
    MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS, MEMO_PROGRAM, TOKEN_2022_PROGRAM, TOKEN_PROGRAM,
    VerifyError, associated_token_account,
};

/// A payment request seen as the SVM checks read it, the same for x402 v1 and v2.
#[derive(Clone, Copy, Debug)]
pub struct PaymentTerms<'a> {
    /// The x402 version.
    pub version: u8,
    /// The scheme the payment says it pays.
    pub paid_scheme: &'a str,
    /// The network the payment says it pays on.
    pub paid_network: &'a str,
    /// The requirements' scheme.
    pub scheme: &'a str,
    /// The requirements' network.
    pub network: &'a str,
    /// The amount required (v2 `amount`, v1 `maxAmountRequired`).
    pub amount: &'a TokenAmount,
    /// The mint required.
    pub asset: &'a str,
    /// Who is to be paid.
    pub pay_to: &'a str,
    /// The requirements' `extra`.
    pub extra: Option<&'a Value>,
    /// The scheme payload.
    pub payload: &'a Value,
}

impl<'a> PaymentTerms<'a> {
    /// The terms of `request`.
    pub fn of(request: &'a PaymentRequest) -> Self {
        match request {
            PaymentRequest::V1 {
                payload,
                requirements,
            } => Self {
                version: 1,
                paid_scheme: payload.scheme.as_str(),
                paid_network: payload.network.as_str(),
                scheme: requirements.scheme.as_str(),
                network: requirements.network.as_str(),
                amount: &requirements.max_amount_required,
                asset: &requirements.asset,
                pay_to: &requirements.pay_to,
                extra: requirements.extra.as_ref(),
                payload: &payload.payload,
            },
            PaymentRequest::V2 {
                payload,
                requirements,
            } => Self {
                version: 2,
                paid_scheme: payload.accepted.scheme.as_str(),
                paid_network: payload.accepted.network.as_str(),
                scheme: requirements.scheme.as_str(),
                network: requirements.network.as_str(),
                amount: &requirements.amount,
                asset: &requirements.asset,
                pay_to: &requirements.pay_to,
                extra: requirements.extra.as_ref(),
                payload: &payload.payload,
            },
        }
    }

    /// `extra.feePayer`, if it is a string.
    pub fn fee_payer(&self) -> Option<&'a str> {
        self.extra?.get("feePayer")?.as_str()
    }
}

/// The caps a facilitator puts on what it pays fees for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyLimits {
    /// The highest compute-unit price, in µlamports (v2 only; v1 always uses the default).
    pub max_compute_unit_price: u64,
    /// The highest compute-unit limit, if any (v2 only).
    pub max_compute_units: Option<u32>,
    /// The most signatures a transaction may require, if capped (v2 only).
    pub max_required_signatures: Option<u8>,
}

impl Default for VerifyLimits {
    fn default() -> Self {
        Self {
            max_compute_unit_price: MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS,
            max_compute_units: None,
            max_required_signatures: None,
        }
    }
}

/// A payment that passed the local checks; it still has to pass simulation.
#[derive(Clone, Debug)]
pub struct CheckedPayment {
    /// The decoded transaction.
    pub decoded: DecodedPayment,
    /// Who pays: the transfer's authority.
    pub payer: Pubkey,
    /// The fee payer named by `extra.feePayer` (account 0).
    pub fee_payer: Pubkey,
    /// The amount transferred.
    pub amount: u64,
}

/// A refusal, with the payer when the checks got far enough to know it (as the official
/// facilitator reports it).
pub type Refused = (VerifyError, Option<Pubkey>);

/// Runs the official facilitator's checks that need no chain, in its order: scheme, network,
/// `extra.feePayer` and that it is one of `fee_payers`, decoding, signer count, account 0 and
/// every other signer's signature, then the instructions (compute limit, compute price, the
/// `TransferChecked`: not by a fee payer, the asset, payTo's token account, the exact amount;
/// only Memo or Lighthouse after it; the seller's memo).
pub fn check_payment(
    terms: &PaymentTerms<'_>,
    fee_payers: &[Pubkey],
    limits: &VerifyLimits,
) -> Result<CheckedPayment, Refused> {
    let refuse = |error| (error, None);
    if terms.paid_scheme != "exact" {
        return Err(refuse(VerifyError::UnsupportedScheme(
            terms.paid_scheme.into(),
        )));
    }
    if terms.scheme != "exact" {
        return Err(refuse(VerifyError::UnsupportedScheme(terms.scheme.into())));
    }
    if terms.paid_network != terms.network {
        return Err(refuse(VerifyError::NetworkMismatch {
            paid: terms.paid_network.into(),
            required: terms.network.into(),
        }));
    }
    let fee_payer_text = terms
        .fee_payer()
        .filter(|text| !text.is_empty())
        .ok_or(refuse(VerifyError::MissingFeePayer))?;
    let fee_payer = fee_payers
        .iter()
        .find(|key| key.to_string() == fee_payer_text)
        .copied()
        .ok_or_else(|| refuse(VerifyError::FeePayerNotManaged(fee_payer_text.into())))?;
    let decoded = DecodedPayment::decode(terms.payload).map_err(refuse)?;
    let v1 = terms.version == 1;
    let message = &decoded.transaction.message;
    let header = message.header();
    if let Some(max) = limits.max_required_signatures.filter(|_| !v1)
        && header.num_required_signatures > max
    {
        return Err(refuse(VerifyError::ExcessiveSigners {
            required: header.num_required_signatures,
            max,
        }));
    }
    let keys = message.static_account_keys();
    if keys.first() != Some(&fee_payer) {
        return Err(refuse(VerifyError::FeePayerMismatch {
            actual: keys.first().map(Pubkey::to_string).unwrap_or_default(),
            expected: fee_payer_text.into(),
        }));
    }
    let signers = usize::from(header.num_required_signatures);
    for (index, signer) in keys.iter().enumerate().take(signers).skip(1) {
        let signed = decoded
            .transaction
            .signatures
            .get(index)
            .is_some_and(|signature| signature.verify(signer.as_ref(), &decoded.message_bytes));
        if !signed {
            return Err(refuse(VerifyError::SignatureInvalid(signer.to_string())));
        }
    }
    if message
        .address_table_lookups()
        .is_some_and(|lookups| !lookups.is_empty())
    {
        return Err(refuse(VerifyError::AddressLookupTables));
    }
    let instructions = message.instructions();
    let program = |ix: &CompiledInstruction| keys[usize::from(ix.program_id_index)];
    let max_instructions = if v1 { 6 } else { 7 };
    if !(3..=max_instructions).contains(&instructions.len()) {
        return Err(refuse(VerifyError::InstructionsLength {
            count: instructions.len(),
            max: max_instructions,
        }));
    }
    check_compute_limit(program(&instructions[0]), &instructions[0].data, limits, v1)
        .map_err(refuse)?;
    let price_cap = if v1 {
        MAX_COMPUTE_UNIT_PRICE_MICROLAMPORTS
    } else {
        limits.max_compute_unit_price
    };
    check_compute_price(program(&instructions[1]), &instructions[1].data, price_cap)
        .map_err(refuse)?;

    // The payer is the authority of the first token instruction with four accounts or more,
    // wherever it is; the transfer itself must be the third instruction.
    let payer = instructions
        .iter()
        .find(|ix| is_token_program(&program(ix)) && ix.accounts.len() >= 4)
        .map(|ix| keys[usize::from(ix.accounts[3])])
        .ok_or(refuse(VerifyError::NoTransferInstruction))?;
    let refuse = |error| (error, Some(payer));
    let transfer = &instructions[2];
    let token_program = program(transfer);
    if !is_token_program(&token_program) || transfer.data.len() < 10 || transfer.data[0] != 12 {
        return Err(refuse(VerifyError::NoTransferInstruction));
    }
    let Ok(TokenInstruction::TransferChecked { amount, .. }) =
        TokenInstruction::unpack(&transfer.data)
    else {
        return Err(refuse(VerifyError::NoTransferInstruction));
    };
    if transfer.accounts.len() < 4 {
        return Err(refuse(VerifyError::NoTransferInstruction));
    }
    let account = |n: usize| keys[usize::from(transfer.accounts[n])];
    let (mint, destination, authority) = (account(1), account(2), account(3));
    if fee_payers.contains(&authority) {
        return Err(refuse(VerifyError::FeePayerTransferringFunds(
            authority.to_string(),
        )));
    }
    if mint.to_string() != terms.asset {
        return Err(refuse(VerifyError::MintMismatch {
            actual: mint.to_string(),
            expected: terms.asset.into(),
        }));
    }
    let expected = terms
        .pay_to
        .parse::<Pubkey>()
        .map(|pay_to| associated_token_account(&pay_to, &mint, &token_program));
    if expected.as_ref() != Ok(&destination) {
        return Err(refuse(VerifyError::RecipientMismatch {
            actual: destination.to_string(),
            expected: expected.map(|key| key.to_string()).unwrap_or_default(),
        }));
    }
    if U256::from(amount) != terms.amount.0 {
        return Err(refuse(VerifyError::AmountMismatch {
            actual: amount,
            expected: terms.amount.0.to_string(),
        }));
    }
    for (index, ix) in instructions.iter().enumerate().skip(3) {
        let id = program(ix);
        if id != LIGHTHOUSE_PROGRAM && id != MEMO_PROGRAM {
            return Err(refuse(VerifyError::UnknownInstruction { index }));
        }
    }
    if let Some(expected_memo) = terms
        .extra
        .and_then(|extra| extra.get("memo"))
        .filter(|m| truthy(m))
    {
        let memos: Vec<&CompiledInstruction> = instructions[3..]
            .iter()
            .filter(|ix| program(ix) == MEMO_PROGRAM)
            .collect();
        if memos.len() != 1 {
            return Err(refuse(VerifyError::MemoCount(memos.len())));
        }
        let memo = String::from_utf8_lossy(&memos[0].data);
        if expected_memo.as_str() != Some(memo.as_ref()) {
            return Err(refuse(VerifyError::MemoMismatch));
        }
    }
    Ok(CheckedPayment {
        decoded,
        payer,
        fee_payer,
        amount,
    })
}

fn is_token_program(program: &Pubkey) -> bool {
    *program == TOKEN_PROGRAM || *program == TOKEN_2022_PROGRAM
}

/// Whether a JSON value is truthy as JavaScript reads it.
fn truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn check_compute_limit(
    program: Pubkey,
    data: &[u8],
    limits: &VerifyLimits,
    v1: bool,
) -> Result<(), VerifyError> {
    if program != COMPUTE_BUDGET_PROGRAM || data.first() != Some(&2) || data.len() < 5 {
        return Err(VerifyError::ComputeLimitInstruction);
    }
    let units = u32::from_le_bytes(data[1..5].try_into().expect("four bytes"));
    match limits.max_compute_units.filter(|_| !v1) {
        Some(max) if units > max => Err(VerifyError::ComputeLimitTooHigh { units, max }),
        _ => Ok(()),
    }
}

fn check_compute_price(program: Pubkey, data: &[u8], max: u64) -> Result<(), VerifyError> {
    if program != COMPUTE_BUDGET_PROGRAM || data.first() != Some(&3) || data.len() < 9 {
        return Err(VerifyError::ComputePriceInstruction);
    }
    let micro_lamports = u64::from_le_bytes(data[1..9].try_into().expect("eight bytes"));
    if micro_lamports > max {
        return Err(VerifyError::ComputePriceTooHigh {
            micro_lamports,
            max,
        });
    }
    Ok(())
}
