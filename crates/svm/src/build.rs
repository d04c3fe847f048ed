//! Building and partially signing a payment as the official client does.
//!
//! `@x402/svm` 2.27 builds a v0 message with four instructions — `SetComputeUnitLimit(20000)`,
//! `SetComputeUnitPrice(1)`, the `TransferChecked` from the payer's associated token account to
//! payTo's, and a memo (the seller's `extra.memo`, or 32 random hex characters that keep two
//! equal payments apart) — with the facilitator as fee payer, and signs it as the transfer's
//! authority only. Its accounts are ordered as `@solana/kit` orders them, which we follow so
//! that the same payment is the same bytes whoever built it.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use solana_compute_budget_interface::ComputeBudgetInstruction;
use solana_hash::Hash;
use solana_instruction::{AccountMeta, Instruction};
use solana_keypair::Keypair;
use solana_message::compiled_instruction::CompiledInstruction;
use solana_message::{MessageHeader, VersionedMessage, v0};
use solana_pubkey::Pubkey;
use solana_signer::Signer;
use solana_transaction::versioned::VersionedTransaction;
use spl_token_interface::instruction::TokenInstruction;

#[cfg(doc)]
use crate::{DEFAULT_COMPUTE_UNIT_LIMIT, DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS};
use crate::{MAX_MEMO_BYTES, MEMO_PROGRAM, associated_token_account};

/// What a payment transaction is made of.
#[derive(Clone, Debug)]
pub struct PaymentTransaction {
    /// The facilitator's fee payer (`extra.feePayer`).
    pub fee_payer: Pubkey,
    /// The mint paid in (`asset`).
    pub mint: Pubkey,
    /// The mint's owner program (SPL Token or Token-2022).
    pub token_program: Pubkey,
    /// The mint's decimals.
    pub decimals: u8,
    /// Who is paid (`payTo`): the transfer goes to its associated token account.
    pub pay_to: Pubkey,
    /// The amount in atomic units.
    pub amount: u64,
    /// A recent blockhash.
    pub recent_blockhash: Hash,
    /// The memo's bytes: the seller's `extra.memo`, or [`random_memo`].
    pub memo: Vec<u8>,
    /// The compute-unit limit ([`DEFAULT_COMPUTE_UNIT_LIMIT`] as the official client).
    pub compute_unit_limit: u32,
    /// The compute-unit price in µlamports ([`DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS`]).
    pub compute_unit_price: u64,
}

/// 16 random bytes as 32 lowercase hex characters, the memo the official client writes when
/// the seller set none.
pub fn random_memo() -> Vec<u8> {
    let mut nonce = [0u8; 16];
    getrandom::fill(&mut nonce).expect("the system's random source works");
    hex::encode(nonce).into_bytes()
}

/// Builds the payment and signs it as `payer`, the transfer's authority, leaving the fee
/// payer's signature empty. Fails on a memo over [`MAX_MEMO_BYTES`], as the official client.
pub fn build_payment(
    payer: &Keypair,
    parts: &PaymentTransaction,
) -> Result<VersionedTransaction, String> {
    build_payment_with(payer, parts, &[], &[])
}

/// [`build_payment`] with `before` inserted between the compute-budget instructions and the
/// transfer, and `after` appended after the memo: the layouts wallets that add their own
/// instructions (Phantom's Lighthouse guards) produce, for tests of how verify treats them.
pub fn build_payment_with(
    payer: &Keypair,
    parts: &PaymentTransaction,
    before: &[Instruction],
    after: &[Instruction],
) -> Result<VersionedTransaction, String> {
    if parts.memo.len() > MAX_MEMO_BYTES {
        return Err(format!("extra.memo exceeds maximum {MAX_MEMO_BYTES} bytes"));
    }
    let authority = payer.pubkey();
    let source = associated_token_account(&authority, &parts.mint, &parts.token_program);
    let destination = associated_token_account(&parts.pay_to, &parts.mint, &parts.token_program);
    let transfer = Instruction {
        program_id: parts.token_program,
        accounts: vec![
            AccountMeta::new(source, false),
            AccountMeta::new_readonly(parts.mint, false),
            AccountMeta::new(destination, false),
            AccountMeta::new_readonly(authority, true),
        ],
        data: TokenInstruction::TransferChecked {
            amount: parts.amount,
            decimals: parts.decimals,
        }
        .pack(),
    };
    let memo = Instruction {
        program_id: MEMO_PROGRAM,
        accounts: Vec::new(),
        data: parts.memo.clone(),
    };
    let instructions: Vec<Instruction> = [
        ComputeBudgetInstruction::set_compute_unit_limit(parts.compute_unit_limit),
        ComputeBudgetInstruction::set_compute_unit_price(parts.compute_unit_price),
    ]
    .into_iter()
    .chain(before.iter().cloned())
    .chain([transfer, memo])
    .chain(after.iter().cloned())
    .collect();
    let message = compile_as_kit(
        &parts.fee_payer,
        &instructions,
        parts.recent_blockhash.clone(),
    );
    let mut transaction = VersionedTransaction::new_unsigned(VersionedMessage::V0(message));
    transaction
        .try_partial_sign(&[payer], parts.recent_blockhash.clone())
        .map_err(|error| error.to_string())?;
    Ok(transaction)
}

/// An account's part in a message.
#[derive(Clone, Copy, Default)]
struct Role {
    signer: bool,
    writable: bool,
}

/// Compiles `instructions` into a v0 message (no lookup tables) with `@solana/kit`'s account
/// order: the fee payer, then signers before others, writable before read-only, and within
/// each group the addresses in kit's collation order.
fn compile_as_kit(
    fee_payer: &Pubkey,
    instructions: &[Instruction],
    blockhash: Hash,
) -> v0::Message {
    let mut roles: BTreeMap<Pubkey, Role> = BTreeMap::new();
    for instruction in instructions {
        roles.entry(instruction.program_id).or_default();
        for meta in &instruction.accounts {
            let role = roles.entry(meta.pubkey).or_default();
            role.signer |= meta.is_signer;
            role.writable |= meta.is_writable;
        }
    }
    roles.remove(fee_payer);
    let mut others: Vec<(Pubkey, Role, String)> = roles
        .into_iter()
        .map(|(key, role)| (key, role, key.to_string()))
        .collect();
    others.sort_by(|a, b| {
        b.1.signer
            .cmp(&a.1.signer)
            .then(b.1.writable.cmp(&a.1.writable))
            .then_with(|| kit_collation(&a.2, &b.2))
    });
    let header = MessageHeader {
        num_required_signatures: 1 + others.iter().filter(|o| o.1.signer).count() as u8,
        num_readonly_signed_accounts: others
            .iter()
            .filter(|o| o.1.signer && !o.1.writable)
            .count() as u8,
        num_readonly_unsigned_accounts: others
            .iter()
            .filter(|o| !o.1.signer && !o.1.writable)
            .count() as u8,
    };
    let account_keys: Vec<Pubkey> = std::iter::once(*fee_payer)
        .chain(others.into_iter().map(|o| o.0))
        .collect();
    let index = |key: &Pubkey| {
        account_keys
            .iter()
            .position(|k| k == key)
            .expect("every account was collected") as u8
    };
    let instructions = instructions
        .iter()
        .map(|instruction| CompiledInstruction {
            program_id_index: index(&instruction.program_id),
            accounts: instruction
                .accounts
                .iter()
                .map(|m| index(&m.pubkey))
                .collect(),
            data: instruction.data.clone(),
        })
        .collect();
    v0::Message {
        header,
        account_keys,
        recent_blockhash: blockhash,
        instructions,
        address_table_lookups: Vec::new(),
    }
}

/// How kit compares two base58 addresses: an English collator, so letters compare without
/// case first (digits before letters), and only when the letters agree does case decide,
/// lower case first, at the first place they differ.
fn kit_collation(a: &str, b: &str) -> Ordering {
    let folded = |s: &str| s.to_ascii_lowercase();
    folded(a).cmp(&folded(b)).then_with(|| {
        a.bytes()
            .zip(b.bytes())
            .find(|(x, y)| x != y)
            .map_or(Ordering::Equal, |(x, _)| {
                if x.is_ascii_lowercase() {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kit_collation_ignores_case_before_it_minds_it() {
        assert_eq!(kit_collation("abc", "ABD"), Ordering::Less);
        assert_eq!(kit_collation("9zz", "Abc"), Ordering::Less);
        assert_eq!(kit_collation("abc", "Abc"), Ordering::Less);
        assert_eq!(kit_collation("Abc", "abc"), Ordering::Greater);
        assert_eq!(kit_collation("Memo", "memo"), Ordering::Greater);
        assert_eq!(kit_collation("ComputeBudget", "Memo"), Ordering::Less);
        assert_eq!(kit_collation("4zMM", "ComputeBudget"), Ordering::Less);
    }

    #[test]
    fn a_long_memo_is_refused_and_the_random_one_is_32_hex_characters() {
        let memo = random_memo();
        assert_eq!(memo.len(), 32);
        assert!(
            memo.iter()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        let parts = PaymentTransaction {
            fee_payer: Pubkey::new_unique(),
            mint: Pubkey::new_unique(),
            token_program: crate::TOKEN_PROGRAM,
            decimals: 6,
            pay_to: Pubkey::new_unique(),
            amount: 1,
            recent_blockhash: Hash::default(),
            memo: vec![b'x'; MAX_MEMO_BYTES + 1],
            compute_unit_limit: crate::DEFAULT_COMPUTE_UNIT_LIMIT,
            compute_unit_price: crate::DEFAULT_COMPUTE_UNIT_PRICE_MICROLAMPORTS,
        };
        assert!(build_payment(&Keypair::new(), &parts).is_err());
    }
}
