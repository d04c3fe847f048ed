//! The `batch-settlement` channels the gateway is paid through, kept in SQLite
//! ([`SqliteChannelStore`]) so that the vouchers it holds, and with them the money charged
//! and not yet claimed, survive a restart.
//!
//! One row per channel; amounts are exact (`u128` written as decimal text). The file belongs
//! to one process (SQLite's exclusive locking mode: a second gateway on the same file is
//! refused at start; several instances share Postgres instead). That process keeps every
//! record in memory behind a lock per channel, so an update is atomic without a database
//! round trip, and writes through to the file before the update returns:
//!
//! - a write that changes what money depends on (what was charged, the voucher held, the
//!   chain's state, the channel itself) is committed with `synchronous = FULL` before the
//!   update returns: a charge acknowledged to a client is on disk;
//! - a write that only takes or drops a request's reservation stays in memory, and
//!   reservations are never written: no request outlives the process that admitted it.
//!
//! Durable writes from all channels go to one writer thread that commits whatever is queued in
//! one transaction (group commit): one `fsync` serves every request that charged meanwhile.
//!
//! Once it journals charges ([`SqliteChannelStore::journal_charges`]), a charge's payment journal
//! entry (the paywall's [`ChargeNote`](x402_proto::ChargeNote)) is committed with the charge, in
//! its transaction, into `charge_notes`; then moved to the payment journal in large groups off
//! the paid path and forgotten here. A charge is never without its entry, and the paid path
//! waits for one synced commit, not two. Notes left by a process that stopped before moving
//! them are moved when the file is next opened (the journal keeps one entry per payment).
//!
//! [`BatchClaiming`] is that store with the claimers that turn its vouchers into money.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};

use alloy_primitives::{Address, Bytes, U256};
use rusqlite::{Connection, TransactionBehavior, params};
use x402_evm::batch::{
    BatchClaimer, ChannelConfig, ChannelId, ChannelRecord, ChannelStore, ChannelStoreError,
    ChannelWrite, ClaimError, ClaimLock, ClaimRun, HeldVoucher, NotedUpdate, OnchainMirror,
    Reservation,
};
use x402_paywall::PaymentEntry;
use x402_proto::{BoxFuture, Facilitator, Network};

use crate::config::BatchSettlementConfig;
use crate::group_commit::{GroupCommit, GroupWriter};
use crate::payments::{Backlog, Journal};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS channels (
    id                    TEXT    PRIMARY KEY,
    network               TEXT    NOT NULL,
    config                TEXT    NOT NULL,
    charged               TEXT    NOT NULL,
    voucher_max           TEXT,
    voucher_signature     TEXT,
    balance               TEXT    NOT NULL,
    total_claimed         TEXT    NOT NULL,
    withdraw_requested_at INTEGER NOT NULL,
    refund_nonce          TEXT    NOT NULL,
    read_at               INTEGER NOT NULL,
    pending_id            TEXT,
    pending_max           TEXT,
    pending_expires_at    INTEGER,
    last_charged_at       INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS charge_notes (
    seq  INTEGER PRIMARY KEY,
    note BLOB    NOT NULL
);
";

/// The schema's version (`PRAGMA user_version`); a file written by a later version is refused.
/// 2: `charge_notes`.
const SCHEMA_VERSION: i64 = 2;

/// The most writes one commit takes.
const MAX_GROUP: usize = 512;

const COLUMNS: &str = "id, network, config, charged, voucher_max, voucher_signature, balance, \
     total_claimed, withdraw_requested_at, refund_nonce, read_at, pending_id, pending_max, \
     pending_expires_at, last_charged_at";

fn db_error(error: impl std::fmt::Display) -> ChannelStoreError {
    ChannelStoreError(error.to_string())
}

/// One channel's record in memory (`None`: no such channel), locked while it is updated.
type Cell = Arc<tokio::sync::Mutex<Option<ChannelRecord>>>;

/// Channels in one SQLite file owned by this process, served from memory and written through
/// (WAL, durable writes synced to disk before they are acknowledged).
#[derive(Debug, Clone)]
pub struct SqliteChannelStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    cells: std::sync::Mutex<HashMap<ChannelId, Cell>>,
    writer: GroupWriter<ChannelWrites>,
    notes: Notes,
}

/// The journal entries of charges, committed with them (`charge_notes`) until the payment
/// journal has them.
#[derive(Debug)]
struct Notes {
    /// The next note's number.
    next: AtomicI64,
    /// Where a committed note goes; unset (and no note kept) until the store journals charges.
    outlet: OnceLock<NoteOutlet>,
    /// The notes in the file when it was opened, handed over first.
    left: std::sync::Mutex<Vec<ChargeNoteRow>>,
}

/// A charge's journal entry as `charge_notes` keeps it.
#[derive(Clone, Debug)]
struct ChargeNoteRow {
    seq: i64,
    note: Vec<u8>,
}

/// The way from the store to the task that moves notes into the journal, counting each note
/// in the journal's backlog.
#[derive(Clone, Debug)]
struct NoteOutlet {
    notes: tokio::sync::mpsc::UnboundedSender<ChargeNoteRow>,
    backlog: Arc<Backlog>,
}

impl NoteOutlet {
    fn send(&self, note: ChargeNoteRow) {
        self.backlog.handed(1);
        if self.notes.send(note).is_err() {
            // The mover stopped (the gateway is stopping): the note stays in the file and is
            // moved when it is next opened.
            self.backlog.moved(1);
        }
    }
}

impl SqliteChannelStore {
    /// Opens (creating if needed) the channel table at `path` and reads every channel in it,
    /// taking the file for this process: a file another process holds is refused.
    pub fn open(path: &Path) -> Result<Self, ChannelStoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| db_error(format!("creating {}: {e}", parent.display())))?;
        }
        let connection = Connection::open(path)
            .map_err(|e| db_error(format!("opening {}: {e}", path.display())))?;
        let in_use = |error: rusqlite::Error| {
            if is_busy(&error) {
                db_error(format!(
                    "{} is in use by another process: one gateway per channel file (several \
                     instances share a Postgres database instead)",
                    path.display()
                ))
            } else {
                db_error(format!("{}: {error}", path.display()))
            }
        };
        // Exclusive before WAL: the WAL index lives in this process's memory, and the first
        // write below takes the file until the connection closes. FULL: a durable write is on
        // disk before it is acknowledged.
        connection
            .execute_batch(
                "PRAGMA busy_timeout = 2000; PRAGMA locking_mode = EXCLUSIVE; \
                 PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;",
            )
            .map_err(in_use)?;
        let version: i64 = connection
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(in_use)?;
        if version > SCHEMA_VERSION {
            return Err(db_error(format!(
                "{} was written by a later version (schema {version}, this one knows {SCHEMA_VERSION})",
                path.display()
            )));
        }
        connection
            .execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))
            .map_err(in_use)?;
        let left = read_notes(&connection)?;
        let next = left.last().map_or(1, |note| note.seq + 1);
        let mut cells = HashMap::new();
        for mut record in read_all(&connection)? {
            // No request outlives the process that admitted it (a file written before
            // reservations stayed in memory may hold some).
            record.pending = None;
            cells.insert(record.id, Arc::new(tokio::sync::Mutex::new(Some(record))));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                cells: std::sync::Mutex::new(cells),
                writer: GroupWriter::start(connection, "channel-store").map_err(db_error)?,
                notes: Notes {
                    next: AtomicI64::new(next),
                    outlet: OnceLock::new(),
                    left: std::sync::Mutex::new(left),
                },
            }),
        })
    }

    /// From now on, commits the journal entry the paywall notes for each charge with the
    /// charge, and moves the entries into `journal` (with any this file held from before)
    /// in groups, off the paid path: [`Journal::caught_up`] waits for them. Called once, in
    /// a runtime; later calls change nothing.
    pub fn journal_charges(&self, journal: &Journal) {
        let notes = &self.inner.notes;
        if notes.outlet.get().is_some() {
            tracing::warn!("the channel store journals its charges already");
            return;
        }
        let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
        let outlet = NoteOutlet {
            notes: sender,
            backlog: journal.backlog(),
        };
        let left = std::mem::take(
            &mut *notes
                .left
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if !left.is_empty() {
            tracing::info!(
                notes = left.len(),
                "moving the journal entries of charges the last run did not move"
            );
        }
        if notes.outlet.set(outlet.clone()).is_err() {
            return;
        }
        for note in left {
            outlet.send(note);
        }
        tokio::spawn(move_notes(
            receiver,
            journal.clone(),
            Arc::downgrade(&self.inner),
        ));
    }

    /// The cell of `id`, made empty when the channel is new.
    fn cell(&self, id: &ChannelId) -> Cell {
        let mut cells = self
            .inner
            .cells
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(cells.entry(*id).or_default())
    }
}

impl SqliteChannelStore {
    /// One update of `id`, with the note its closure may answer: kept (committed with the
    /// write, then handed to the journal) when the store journals charges. Answers whether it
    /// was.
    async fn change(
        &self,
        id: &ChannelId,
        update: &mut NotedUpdate<'_>,
    ) -> Result<bool, ChannelStoreError> {
        let cell = self.cell(id);
        let mut current = cell.lock().await;
        let (write, note) = update(current.as_ref());
        let notes = &self.inner.notes;
        let outlet = notes.outlet.get();
        let (durable, next, noted) = match write {
            ChannelWrite::Keep => return Ok(false),
            ChannelWrite::Put(record) if record.id != *id => {
                return Err(ChannelStoreError(format!(
                    "an update of channel {id} wrote channel {}",
                    record.id
                )));
            }
            ChannelWrite::Put(record) => match (note, outlet) {
                (Some(note), Some(outlet)) => {
                    let seq = notes.next.fetch_add(1, Ordering::Relaxed);
                    let row = ChargeNoteRow { seq, note };
                    let durable =
                        Durable::PutNoted(Box::new(encode(&record)?), row, outlet.clone());
                    (Some(durable), Some(record), true)
                }
                _ => {
                    let durable = if durable_change(current.as_ref(), &record) {
                        Some(Durable::Put(Box::new(encode(&record)?)))
                    } else {
                        None
                    };
                    (durable, Some(record), false)
                }
            },
            ChannelWrite::Delete => (
                current.is_some().then_some(Durable::Delete(*id)),
                None,
                false,
            ),
        };
        // Memory first, so that a caller that stops waiting leaves memory as the file will
        // be once the queued write commits; undone if the commit fails.
        let before = std::mem::replace(&mut *current, next);
        if let Some(write) = durable
            && let Err(error) = self.inner.writer.commit(write).await
        {
            *current = before;
            return Err(error);
        }
        Ok(noted)
    }
}

/// Whether `new` differs from `old` in more than the reservation (a write the file must get).
fn durable_change(old: Option<&ChannelRecord>, new: &ChannelRecord) -> bool {
    match old {
        None => true,
        Some(old) => {
            let mut same_reservation = new.clone();
            same_reservation.pending.clone_from(&old.pending);
            same_reservation != *old
        }
    }
}

/// A write the file must get.
#[derive(Debug)]
enum Durable {
    Put(Box<Row>),
    /// A record, with the journal entry of the charge it makes, handed to the outlet once
    /// committed (by the writer, before the charge's request hears back: whether or not it
    /// still waits).
    PutNoted(Box<Row>, ChargeNoteRow, NoteOutlet),
    Delete(ChannelId),
    /// Notes the journal has now.
    Forget(Vec<i64>),
}

/// The most notes moved into the journal in one commit.
const NOTES_PER_MOVE: usize = 512;

/// How long the mover lets notes gather after the first of a group arrives: one journal
/// commit of many entries costs far less than one commit each (every commit rewrites the
/// pages of the payments' indexes and totals it touches, and syncs).
const NOTES_GATHER: std::time::Duration = std::time::Duration::from_millis(100);

/// Moves the notes the store hands over into `journal`, as many at a time as gather within
/// [`NOTES_GATHER`] of the first (up to [`NOTES_PER_MOVE`]), then forgets them in the store's
/// file. Ends when the store is gone; notes not moved by then stay in its file.
async fn move_notes(
    mut notes: tokio::sync::mpsc::UnboundedReceiver<ChargeNoteRow>,
    journal: Journal,
    store: std::sync::Weak<Inner>,
) {
    let backlog = journal.backlog();
    let mut group = Vec::with_capacity(NOTES_PER_MOVE);
    while notes.recv_many(&mut group, NOTES_PER_MOVE).await > 0 {
        if group.len() < NOTES_PER_MOVE {
            tokio::time::sleep(NOTES_GATHER).await;
            while group.len() < NOTES_PER_MOVE {
                match notes.try_recv() {
                    Ok(note) => group.push(note),
                    Err(_) => break,
                }
            }
        }
        // Read from the notes again on each try: the journal takes the entries it is given.
        let seqs = loop {
            let (entries, read) = entries_of(&group);
            match journal.record_many(entries).await {
                Ok(()) => break read,
                Err(_) if store.strong_count() == 0 => {
                    // Stopping: the notes stay in the file, for the next start.
                    backlog.moved(group.len());
                    return;
                }
                Err(error) => {
                    tracing::error!(%error, notes = group.len(), "the payment journal refused the charges' entries; retrying in 1 s (they are kept with the charges)");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        };
        let done = group.len();
        group.clear();
        // Not waited for: forgotten with the next group the store commits. The store is held
        // only to queue it, never across a wait.
        if let Some(inner) = store.upgrade() {
            inner.writer.enqueue(Durable::Forget(seqs));
        }
        backlog.moved(done);
    }
}

/// The journal entries `notes` hold, and the numbers of the notes they come from. One that
/// cannot be read is said loudly and left out, and stays in the file (for a version that
/// reads it, or an operator).
fn entries_of(notes: &[ChargeNoteRow]) -> (Vec<PaymentEntry>, Vec<i64>) {
    let mut entries = Vec::with_capacity(notes.len());
    let mut read = Vec::with_capacity(notes.len());
    for note in notes {
        match PaymentEntry::from_note(&note.note) {
            Ok(entry) => {
                entries.push(entry);
                read.push(note.seq);
            }
            Err(error) => tracing::error!(
                seq = note.seq,
                %error,
                "PAYMENT NOT JOURNALED: a charge's journal entry cannot be read; it stays in the \
                 channel file's charge_notes"
            ),
        }
    }
    (entries, read)
}

fn read_notes(connection: &Connection) -> Result<Vec<ChargeNoteRow>, ChannelStoreError> {
    let mut statement = connection
        .prepare("SELECT seq, note FROM charge_notes ORDER BY seq")
        .map_err(db_error)?;
    let rows = statement
        .query_map([], |row| {
            Ok(ChargeNoteRow {
                seq: row.get(0)?,
                note: row.get(1)?,
            })
        })
        .map_err(db_error)?;
    rows.map(|row| row.map_err(db_error)).collect()
}

/// The channel store's writes, committed in groups by its writer thread.
struct ChannelWrites;

impl GroupCommit for ChannelWrites {
    type Write = Durable;
    type Error = ChannelStoreError;
    const NAME: &'static str = "the channel store";
    const MAX_ROWS: usize = MAX_GROUP;

    fn commit(connection: &mut Connection, group: &[Durable]) -> Result<(), ChannelStoreError> {
        commit_group(connection, group)
    }

    fn stopped() -> ChannelStoreError {
        ChannelStoreError("the channel store's writer stopped".into())
    }
}

fn commit_group(connection: &mut Connection, group: &[Durable]) -> Result<(), ChannelStoreError> {
    let transaction = connection
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(db_error)?;
    for write in group {
        match write {
            Durable::Put(row) => write_row(&transaction, row)?,
            Durable::PutNoted(row, note, _) => {
                write_row(&transaction, row)?;
                transaction
                    .prepare_cached("INSERT INTO charge_notes (seq, note) VALUES (?1, ?2)")
                    .and_then(|mut insert| insert.execute(params![note.seq, note.note]))
                    .map_err(db_error)?;
            }
            Durable::Forget(seqs) => {
                let mut forget = transaction
                    .prepare_cached("DELETE FROM charge_notes WHERE seq BETWEEN ?1 AND ?2")
                    .map_err(db_error)?;
                for (first, last) in runs(seqs) {
                    forget.execute(params![first, last]).map_err(db_error)?;
                }
            }
            Durable::Delete(id) => {
                transaction
                    .execute(
                        "DELETE FROM channels WHERE id = ?1",
                        params![id.to_string()],
                    )
                    .map_err(db_error)?;
            }
        }
    }
    transaction.commit().map_err(db_error)?;
    for write in group {
        if let Durable::PutNoted(_, note, outlet) = write {
            outlet.send(note.clone());
        }
    }
    Ok(())
}

/// `seqs` as runs of consecutive numbers (first, last), in order: one range delete each
/// instead of one delete per note. A run holds only numbers in `seqs`, so a note not moved
/// yet (a gap) is never forgotten.
fn runs(seqs: &[i64]) -> Vec<(i64, i64)> {
    let mut sorted = seqs.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<(i64, i64)> = Vec::new();
    for seq in sorted {
        match runs.last_mut() {
            Some((_, last)) if last.checked_add(1) == Some(seq) => *last = seq,
            _ => runs.push((seq, seq)),
        }
    }
    runs
}

fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

fn corrupt(column: &str, id: &str) -> ChannelStoreError {
    ChannelStoreError(format!("corrupt {column} of channel {id}"))
}

fn to_i64(value: u64, column: &str, id: &str) -> Result<i64, ChannelStoreError> {
    i64::try_from(value).map_err(|_| corrupt(column, id))
}

/// A channel record as the columns of a row, in SQLite or Postgres alike: amounts exact
/// (`u128` as decimal text), times in Unix seconds, the config as JSON.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ChannelRow {
    pub(crate) id: String,
    pub(crate) network: String,
    pub(crate) config: String,
    pub(crate) charged: String,
    pub(crate) voucher_max: Option<String>,
    pub(crate) voucher_signature: Option<String>,
    pub(crate) balance: String,
    pub(crate) total_claimed: String,
    pub(crate) withdraw_requested_at: i64,
    pub(crate) refund_nonce: String,
    pub(crate) read_at: i64,
    pub(crate) pending_id: Option<String>,
    pub(crate) pending_max: Option<String>,
    pub(crate) pending_expires_at: Option<i64>,
    pub(crate) last_charged_at: i64,
}

impl ChannelRow {
    /// The row of `record`, its reservation included only `with_reservation`.
    pub(crate) fn of(
        record: &ChannelRecord,
        with_reservation: bool,
    ) -> Result<Self, ChannelStoreError> {
        let id = record.id.to_string();
        let onchain = &record.onchain;
        let pending = record.pending.as_ref().filter(|_| with_reservation);
        Ok(Self {
            network: record.network.to_string(),
            config: serde_json::to_string(&record.config).map_err(db_error)?,
            charged: record.charged.to_string(),
            voucher_max: record.voucher.as_ref().map(|v| v.max_claimable.to_string()),
            voucher_signature: record.voucher.as_ref().map(|v| v.signature.to_string()),
            balance: onchain.balance.to_string(),
            total_claimed: onchain.total_claimed.to_string(),
            withdraw_requested_at: to_i64(
                onchain.withdraw_requested_at,
                "withdraw_requested_at",
                &id,
            )?,
            refund_nonce: onchain.refund_nonce.to_string(),
            read_at: to_i64(onchain.read_at, "read_at", &id)?,
            pending_id: pending.map(|r| r.id.to_string()),
            pending_max: pending.map(|r| r.max_claimable.to_string()),
            pending_expires_at: pending
                .map(|r| to_i64(r.expires_at, "pending_expires_at", &id))
                .transpose()?,
            last_charged_at: to_i64(record.last_charged_at, "last_charged_at", &id)?,
            id,
        })
    }

    /// The record this row holds.
    pub(crate) fn record(self) -> Result<ChannelRecord, ChannelStoreError> {
        let id = self.id;
        let amount =
            |column: &str, text: &str| text.parse::<u128>().map_err(|_| corrupt(column, &id));
        let time =
            |column: &str, value: i64| u64::try_from(value).map_err(|_| corrupt(column, &id));
        let voucher = match (self.voucher_max, self.voucher_signature) {
            (Some(max), Some(signature)) => Some(HeldVoucher {
                max_claimable: amount("voucher_max", &max)?,
                signature: signature
                    .parse::<Bytes>()
                    .map_err(|_| corrupt("voucher_signature", &id))?,
            }),
            (None, None) => None,
            _ => return Err(corrupt("voucher", &id)),
        };
        let pending = match (self.pending_id, self.pending_max, self.pending_expires_at) {
            (Some(pid), Some(max), Some(expires_at)) => Some(Reservation {
                id: pid.parse().map_err(|_| corrupt("pending_id", &id))?,
                max_claimable: amount("pending_max", &max)?,
                expires_at: time("pending_expires_at", expires_at)?,
            }),
            (None, None, None) => None,
            _ => return Err(corrupt("pending", &id)),
        };
        Ok(ChannelRecord {
            id: id.parse::<ChannelId>().map_err(|_| corrupt("id", &id))?,
            network: Network::new(self.network),
            config: serde_json::from_str::<ChannelConfig>(&self.config)
                .map_err(|_| corrupt("config", &id))?,
            charged: amount("charged", &self.charged)?,
            voucher,
            onchain: OnchainMirror {
                balance: amount("balance", &self.balance)?,
                total_claimed: amount("total_claimed", &self.total_claimed)?,
                withdraw_requested_at: time("withdraw_requested_at", self.withdraw_requested_at)?,
                refund_nonce: self
                    .refund_nonce
                    .parse::<U256>()
                    .map_err(|_| corrupt("refund_nonce", &id))?,
                read_at: time("read_at", self.read_at)?,
            },
            pending,
            last_charged_at: time("last_charged_at", self.last_charged_at)?,
        })
    }
}

fn read_all(connection: &Connection) -> Result<Vec<ChannelRecord>, ChannelStoreError> {
    let mut statement = connection
        .prepare(&format!("SELECT {COLUMNS} FROM channels ORDER BY id"))
        .map_err(db_error)?;
    let rows = statement.query_map([], row_record).map_err(db_error)?;
    rows.map(|row| row.map_err(db_error)?.record()).collect()
}

/// A record as the row [`write_row`] writes: reservations are never written (no request
/// outlives the process that admitted it).
type Row = [rusqlite::types::Value; 15];

fn encode(record: &ChannelRecord) -> Result<Row, ChannelStoreError> {
    use rusqlite::types::Value;
    let row = ChannelRow::of(record, false)?;
    let text = Value::Text;
    let optional = |value: Option<String>| value.map_or(Value::Null, Value::Text);
    Ok([
        text(row.id),
        text(row.network),
        text(row.config),
        text(row.charged),
        optional(row.voucher_max),
        optional(row.voucher_signature),
        text(row.balance),
        text(row.total_claimed),
        Value::Integer(row.withdraw_requested_at),
        text(row.refund_nonce),
        Value::Integer(row.read_at),
        Value::Null,
        Value::Null,
        Value::Null,
        Value::Integer(row.last_charged_at),
    ])
}

/// The statement writing a row (its text built once; SQLite keeps it prepared). An existing
/// row is updated where it is (no delete and insert: the key's index is left alone).
fn upsert_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let update = COLUMNS
            .split(", ")
            .filter(|column| *column != "id")
            .map(|column| format!("{column} = excluded.{column}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "INSERT INTO channels ({COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
             ON CONFLICT (id) DO UPDATE SET {update}"
        )
    })
}

fn write_row(connection: &Connection, row: &Row) -> Result<(), ChannelStoreError> {
    connection
        .prepare_cached(upsert_sql())
        .and_then(|mut statement| statement.execute(rusqlite::params_from_iter(row.iter())))
        .map_err(db_error)?;
    Ok(())
}

/// A row selected as [`COLUMNS`].
fn row_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<ChannelRow> {
    Ok(ChannelRow {
        id: row.get("id")?,
        network: row.get("network")?,
        config: row.get("config")?,
        charged: row.get("charged")?,
        voucher_max: row.get("voucher_max")?,
        voucher_signature: row.get("voucher_signature")?,
        balance: row.get("balance")?,
        total_claimed: row.get("total_claimed")?,
        withdraw_requested_at: row.get("withdraw_requested_at")?,
        refund_nonce: row.get("refund_nonce")?,
        read_at: row.get("read_at")?,
        pending_id: row.get("pending_id")?,
        pending_max: row.get("pending_max")?,
        pending_expires_at: row.get("pending_expires_at")?,
        last_charged_at: row.get("last_charged_at")?,
    })
}

impl ChannelStore for SqliteChannelStore {
    fn get<'a>(
        &'a self,
        id: &'a ChannelId,
    ) -> BoxFuture<'a, Result<Option<ChannelRecord>, ChannelStoreError>> {
        Box::pin(async move { Ok(self.cell(id).lock().await.clone()) })
    }

    fn update<'a>(
        &'a self,
        id: &'a ChannelId,
        update: &'a mut (dyn FnMut(Option<&ChannelRecord>) -> ChannelWrite + Send),
    ) -> BoxFuture<'a, Result<(), ChannelStoreError>> {
        Box::pin(async move {
            self.change(id, &mut |current| (update(current), None))
                .await
                .map(|_| ())
        })
    }

    fn update_noted<'a>(
        &'a self,
        id: &'a ChannelId,
        update: &'a mut NotedUpdate<'a>,
    ) -> BoxFuture<'a, Result<bool, ChannelStoreError>> {
        Box::pin(self.change(id, update))
    }

    fn all(&self) -> BoxFuture<'_, Result<Vec<ChannelRecord>, ChannelStoreError>> {
        Box::pin(async move {
            let cells: Vec<Cell> = self
                .inner
                .cells
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .values()
                .cloned()
                .collect();
            let mut records = Vec::with_capacity(cells.len());
            for cell in cells {
                if let Some(record) = cell.lock().await.clone() {
                    records.push(record);
                }
            }
            records.sort_by_key(|record| record.id);
            Ok(records)
        })
    }
}

/// The gateway's `batch-settlement` side: the channel store and one claimer per network it
/// is paid on, all claiming from that store through the gateway's facilitator.
#[derive(Clone, Debug)]
pub struct BatchClaiming {
    /// Where the channels are kept (a paywall's batch-settlement server charges into it).
    pub store: Arc<dyn ChannelStore>,
    /// One claimer per network.
    pub claimers: Vec<Arc<BatchClaimer>>,
    /// The networks and assets the gateway is paid in (reported even with no channel yet).
    pub assets: Vec<(Network, Address)>,
}

impl BatchClaiming {
    /// Sets up a claimer per network of `accepted` (the networks and assets the gateway is
    /// paid in), claiming from `store` as `config` says; each run holding `lock` when given
    /// (replicas sharing the store take turns under it).
    pub fn new(
        store: Arc<dyn ChannelStore>,
        config: &BatchSettlementConfig,
        accepted: impl IntoIterator<Item = (Network, Address)>,
        facilitator: Arc<dyn Facilitator>,
        lock: Option<Arc<dyn ClaimLock>>,
    ) -> Self {
        let assets: Vec<(Network, Address)> = accepted.into_iter().collect();
        let mut seen = std::collections::BTreeSet::new();
        let claimers = assets
            .iter()
            .filter(|(network, _)| seen.insert(network.to_string()))
            .map(|(network, _)| {
                let claimer = BatchClaimer::new(
                    Arc::clone(&store),
                    Arc::clone(&facilitator),
                    network.clone(),
                    config.policy(),
                );
                Arc::new(match &lock {
                    Some(lock) => claimer.with_lock(Arc::clone(lock)),
                    None => claimer,
                })
            })
            .collect();
        Self {
            store,
            claimers,
            assets,
        }
    }

    /// Claims and settles everything unclaimed on every network now.
    pub async fn flush(&self) -> Vec<(Network, Result<ClaimRun, ClaimError>)> {
        let mut runs = Vec::new();
        for claimer in &self.claimers {
            runs.push((claimer.network().clone(), claimer.flush().await));
        }
        runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy::primitives::B256;

    #[test]
    fn moved_notes_are_forgotten_by_runs_that_never_cover_a_gap() {
        assert_eq!(runs(&[]), vec![]);
        assert_eq!(runs(&[7]), vec![(7, 7)]);
        // Out of order (commit order), a duplicate, and a gap where a note was not moved.
        assert_eq!(runs(&[5, 3, 4, 4, 9, 10, 1]), vec![(1, 1), (3, 5), (9, 10)]);
        assert_eq!(
            runs(&[i64::MAX, i64::MAX - 1]),
            vec![(i64::MAX - 1, i64::MAX)]
        );
    }

    fn record(charged: u128) -> ChannelRecord {
        let config = ChannelConfig {
            payer: Address::repeat_byte(1),
            payer_authorizer: Address::repeat_byte(1),
            receiver: Address::repeat_byte(2),
            receiver_authorizer: Address::repeat_byte(3),
            token: Address::repeat_byte(4),
            withdraw_delay: 900,
            salt: B256::repeat_byte(7),
        };
        ChannelRecord {
            charged,
            ..ChannelRecord::new(
                ChannelId::new(B256::repeat_byte(9)),
                Network::new("eip155:8453"),
                config,
            )
        }
    }

    /// A store over a fresh database on the test server, opened anew (a new pool: another
    /// process) by each call of the returned closure.
    async fn postgres() -> (
        x402_testkit::TempDatabase,
        impl AsyncFn() -> Arc<dyn ChannelStore>,
    ) {
        use crate::postgres::{Database, Leases, PostgresChannelStore};
        let temp = x402_testkit::TempDatabase::create().await;
        let url = temp.url.clone();
        let open = async move || {
            let database = Database::connect(&url, Leases::default()).await.unwrap();
            Arc::new(PostgresChannelStore::new(database)) as Arc<dyn ChannelStore>
        };
        (temp, open)
    }

    /// A store over the SQLite file `path`, opened anew by each call (the last one closed).
    fn sqlite(path: std::path::PathBuf) -> impl AsyncFn() -> Arc<dyn ChannelStore> {
        async move || Arc::new(SqliteChannelStore::open(&path).unwrap()) as Arc<dyn ChannelStore>
    }

    /// A record written by one store is read back exactly by a new one over the same data (a
    /// restarted gateway, or another replica), its reservation only when the store keeps them
    /// (Postgres does: replicas share them; SQLite does not: no request outlives its process).
    async fn a_record_reads_back_exactly(
        open: impl AsyncFn() -> Arc<dyn ChannelStore>,
        keeps_reservations: bool,
    ) {
        let mut full = record(u128::MAX - 1);
        full.voucher = Some(HeldVoucher {
            max_claimable: u128::MAX,
            signature: Bytes::from(vec![0xab; 65]),
        });
        full.onchain = OnchainMirror {
            balance: u128::MAX,
            total_claimed: 1 << 100,
            withdraw_requested_at: 1_700_000_000,
            refund_nonce: U256::MAX,
            read_at: 1_700_000_001,
        };
        full.pending = Some(Reservation {
            id: u64::MAX,
            max_claimable: 12,
            expires_at: 1_700_000_300,
        });
        full.last_charged_at = 1_700_000_002;
        {
            let store = open().await;
            let put = full.clone();
            store
                .update(&full.id, &mut |current| {
                    assert_eq!(current, None);
                    ChannelWrite::Put(put.clone())
                })
                .await
                .unwrap();
        }
        let store = open().await;
        let kept = ChannelRecord {
            pending: full.pending.clone().filter(|_| keeps_reservations),
            ..full.clone()
        };
        assert_eq!(store.get(&full.id).await.unwrap(), Some(kept.clone()));
        assert_eq!(store.all().await.unwrap(), [kept]);
        store
            .update(&full.id, &mut |_| ChannelWrite::Delete)
            .await
            .unwrap();
        assert_eq!(store.get(&full.id).await.unwrap(), None);
        drop(store);
        assert_eq!(open().await.all().await.unwrap(), []);
    }

    #[tokio::test]
    async fn a_record_reads_back_exactly_after_a_restart_but_its_reservation() {
        let dir = tempfile::tempdir().unwrap();
        a_record_reads_back_exactly(sqlite(dir.path().join("channels.db")), false).await;
    }

    #[tokio::test]
    async fn a_record_reads_back_exactly_in_another_replica_with_its_reservation() {
        let (_database, open) = postgres().await;
        a_record_reads_back_exactly(open, true).await;
    }

    async fn an_update_that_writes_another_channel_is_refused(store: Arc<dyn ChannelStore>) {
        let other = ChannelId::new(B256::repeat_byte(1));
        let refused = store
            .update(&other, &mut |_| ChannelWrite::Put(record(1)))
            .await;
        assert!(refused.is_err());
        assert_eq!(store.all().await.unwrap(), []);
        // The store is usable after the failed update.
        let id = record(0).id;
        store
            .update(&id, &mut |_| ChannelWrite::Put(record(5)))
            .await
            .unwrap();
        assert_eq!(store.get(&id).await.unwrap().unwrap().charged, 5);
    }

    #[tokio::test]
    async fn an_update_that_writes_another_channel_is_refused_and_nothing_is_written_in_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        an_update_that_writes_another_channel_is_refused(sqlite(dir.path().join("c.db"))().await)
            .await;
    }

    #[tokio::test]
    async fn an_update_that_writes_another_channel_is_refused_and_nothing_is_written_in_postgres() {
        let (_database, open) = postgres().await;
        an_update_that_writes_another_channel_is_refused(open().await).await;
    }

    #[tokio::test]
    async fn a_later_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 9")
            .unwrap();
        let refused = SqliteChannelStore::open(&path).unwrap_err();
        assert!(refused.0.contains("later version"), "{refused}");
    }

    /// Tasks charging one channel at once through `stores` never lose an increment, and each
    /// increment is durable when its update returns (read back by a store opened after).
    async fn concurrent_updates_never_lose_an_increment(
        stores: Vec<Arc<dyn ChannelStore>>,
        open: impl AsyncFn() -> Arc<dyn ChannelStore>,
    ) {
        let id = record(0).id;
        let mut tasks = tokio::task::JoinSet::new();
        for store in &stores {
            let store = store.clone();
            tasks.spawn(async move {
                for _ in 0..50 {
                    store
                        .update(&id, &mut |current| {
                            let charged = current.map_or(0, |r| r.charged);
                            // Give the other tasks a chance to interleave, were it allowed.
                            std::thread::yield_now();
                            ChannelWrite::Put(record(charged + 1))
                        })
                        .await
                        .unwrap();
                    tokio::task::yield_now().await;
                }
            });
        }
        tasks.join_all().await;
        let total = 50 * stores.len() as u128;
        assert_eq!(stores[0].get(&id).await.unwrap().unwrap().charged, total);
        drop(stores);
        assert_eq!(open().await.get(&id).await.unwrap().unwrap().charged, total);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_updates_of_one_channel_never_lose_an_increment() {
        let dir = tempfile::tempdir().unwrap();
        let open = sqlite(dir.path().join("c.db"));
        let store = open().await;
        concurrent_updates_never_lose_an_increment(vec![store; 4], open).await;
    }

    /// Two stores on two pools, as two gateway processes, charging one channel at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_replicas_charging_one_channel_never_lose_an_increment() {
        let (_database, open) = postgres().await;
        let (a, b) = (open().await, open().await);
        concurrent_updates_never_lose_an_increment(vec![a.clone(), b.clone(), a, b], open).await;
    }

    /// A reservation taken or dropped is not written (only money is), and a write of what money
    /// depends on carries the record as it is.
    #[tokio::test]
    async fn only_writes_that_move_money_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let id = record(0).id;
        let store = SqliteChannelStore::open(&path).unwrap();
        store
            .update(&id, &mut |_| ChannelWrite::Put(record(3)))
            .await
            .unwrap();
        let reserved = ChannelRecord {
            pending: Some(Reservation {
                id: 1,
                max_claimable: 4,
                expires_at: u64::MAX,
            }),
            ..record(3)
        };
        store
            .update(&id, &mut |_| ChannelWrite::Put(reserved.clone()))
            .await
            .unwrap();
        assert_eq!(store.get(&id).await.unwrap(), Some(reserved.clone()));
        let on_disk = || {
            let file = Connection::open(&path).unwrap();
            read_all(&file).unwrap()
        };
        drop(store);
        assert_eq!(on_disk(), [record(3)]);
        let store = SqliteChannelStore::open(&path).unwrap();
        store
            .update(&id, &mut |_| ChannelWrite::Put(reserved.clone()))
            .await
            .unwrap();
        store
            .update(&id, &mut |_| {
                ChannelWrite::Put(ChannelRecord {
                    charged: 4,
                    ..reserved.clone()
                })
            })
            .await
            .unwrap();
        drop(store);
        assert_eq!(on_disk()[0].charged, 4);
    }

    /// A second store on a file another holds (another gateway process) is refused, saying
    /// why; the file opens again once the first is gone.
    #[tokio::test]
    async fn a_file_in_use_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let first = SqliteChannelStore::open(&path).unwrap();
        let refused = SqliteChannelStore::open(&path).unwrap_err();
        assert!(refused.0.contains("in use by another process"), "{refused}");
        drop(first);
        SqliteChannelStore::open(&path).unwrap();
    }

    /// The paywall's journal entry of a charge (a [`ChargeNote`](x402_proto::ChargeNote)'s).
    fn charge_note(n: u32, amount: u64) -> Vec<u8> {
        let entry = crate::payments::tests::entry(
            n,
            1_764_072_000_000,
            x402_paywall::PaymentState::Charged,
            U256::from(amount),
        );
        entry.to_note().unwrap()
    }

    fn journal_in(dir: &Path) -> (Arc<crate::payments::SqlitePaymentStore>, Journal) {
        let payments =
            Arc::new(crate::payments::SqlitePaymentStore::open(&dir.join("p.db")).unwrap());
        let journal = Journal::new(payments.clone());
        (payments, journal)
    }

    async fn journaled(payments: &crate::payments::SqlitePaymentStore) -> Vec<(String, String)> {
        use crate::payments::{PageQuery, PaymentStore as _};
        let page = payments
            .page(&PageQuery {
                limit: 100,
                ..PageQuery::default()
            })
            .await
            .unwrap();
        let mut rows: Vec<_> = page
            .records
            .into_iter()
            .map(|r| (r.entry.payment, r.entry.amount.0.to_string()))
            .collect();
        rows.sort();
        rows
    }

    fn notes_in(path: &Path) -> usize {
        let file = Connection::open(path).unwrap();
        file.query_row("SELECT COUNT(*) FROM charge_notes", [], |row| row.get(0))
            .unwrap()
    }

    /// Until the store journals charges it keeps no note (the paywall journals the charge
    /// itself); then each charge's note is committed with it, reaches the journal (a reader
    /// waiting for the backlog sees it), and is forgotten in the channel file.
    #[tokio::test]
    async fn a_charges_journal_entry_is_committed_with_it_then_moved_to_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let (payments, journal) = journal_in(dir.path());
        let store = SqliteChannelStore::open(&path).unwrap();
        let id = record(0).id;
        let kept = store
            .update_noted(&id, &mut |_| {
                (ChannelWrite::Put(record(1)), Some(charge_note(1, 1)))
            })
            .await
            .unwrap();
        assert!(!kept, "no note is kept before the store journals charges");
        store.journal_charges(&journal);
        for n in 2..=6_u32 {
            let kept = store
                .update_noted(&id, &mut |_| {
                    (
                        ChannelWrite::Put(record(u128::from(n))),
                        Some(charge_note(n, u64::from(n) * 10)),
                    )
                })
                .await
                .unwrap();
            assert!(kept);
        }
        // A refused charge writes nothing and keeps no note.
        let kept = store
            .update_noted(&id, &mut |_| (ChannelWrite::Keep, Some(charge_note(7, 70))))
            .await
            .unwrap();
        assert!(!kept);
        journal.caught_up().await;
        let rows = journaled(&payments).await;
        assert_eq!(rows.len(), 5, "{rows:?}");
        assert!(rows.iter().all(|(_, amount)| amount != "70"));
        assert_eq!(store.get(&id).await.unwrap().unwrap().charged, 6);
        drop(store);
        assert_eq!(notes_in(&path), 0, "moved notes are forgotten");
    }

    /// Notes a stopped process committed and never moved are moved when the file is opened
    /// again; a note moved twice (the process stopped between the two) is journaled once; a
    /// note that cannot be read is not journaled and not forgotten.
    #[tokio::test]
    async fn notes_left_in_the_file_are_moved_at_the_next_start_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.db");
        let (payments, journal) = journal_in(dir.path());
        drop(SqliteChannelStore::open(&path).unwrap());
        {
            let file = Connection::open(&path).unwrap();
            for seq in [7, 8] {
                file.execute(
                    "INSERT INTO charge_notes (seq, note) VALUES (?1, ?2)",
                    params![seq, charge_note(1, 25)],
                )
                .unwrap();
            }
            file.execute(
                "INSERT INTO charge_notes (seq, note) VALUES (9, ?1)",
                params![b"not an entry".to_vec()],
            )
            .unwrap();
        }
        let store = SqliteChannelStore::open(&path).unwrap();
        store.journal_charges(&journal);
        let id = record(0).id;
        assert!(
            store
                .update_noted(&id, &mut |_| (
                    ChannelWrite::Put(record(3)),
                    Some(charge_note(2, 3))
                ))
                .await
                .unwrap()
        );
        journal.caught_up().await;
        let rows = journaled(&payments).await;
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows.iter().filter(|(_, amount)| amount == "25").count(), 1);
        use crate::payments::PaymentStore as _;
        let earned = payments.earned_since(0).await.unwrap();
        assert_eq!(earned[0].charged, U256::from(28), "{earned:?}");
        drop(store);
        assert_eq!(notes_in(&path), 1, "the unreadable note stays in the file");
    }
}
