//! The writer thread the gateway's SQLite files share (the channel store, the payment journal):
//! it owns the file's writing connection, waits for a write, takes every other one queued
//! meanwhile (up to a number of rows), commits them in one transaction and tells each waiter
//! the outcome. When its owner is dropped it commits what is queued, checkpoints the WAL into
//! the main file (so whoever opens the file next, in whatever locking mode, reads it from there)
//! and closes the file.

use rusqlite::Connection;

/// One queued write and who waits for its commit.
struct Job<W, E> {
    write: W,
    committed: tokio::sync::oneshot::Sender<Result<(), E>>,
}

/// What a [`GroupWriter`] writes: how many rows a write counts for, and how a group of writes
/// is committed.
pub(crate) trait GroupCommit: Send + 'static {
    /// One write.
    type Write: Send + 'static;
    /// Why a group was not committed (given to every writer of the group).
    type Error: Clone + Send + 'static;
    /// The file's name in messages ("the channel store").
    const NAME: &'static str;
    /// The most rows one transaction takes.
    const MAX_ROWS: usize;

    /// The rows `write` counts for.
    fn rows(_write: &Self::Write) -> usize {
        1
    }

    /// Commits `group` in one transaction.
    fn commit(connection: &mut Connection, group: &[Self::Write]) -> Result<(), Self::Error>;

    /// The error of a write that reached no writer (the thread stopped).
    fn stopped() -> Self::Error;
}

/// The thread that owns a connection and commits `G`'s writes in groups.
pub(crate) struct GroupWriter<G: GroupCommit> {
    queue: Option<std::sync::mpsc::Sender<Job<G::Write, G::Error>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<G: GroupCommit> std::fmt::Debug for GroupWriter<G> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupWriter")
            .field("name", &G::NAME)
            .finish()
    }
}

impl<G: GroupCommit> GroupWriter<G> {
    /// Starts the thread (named `thread`) on `connection`.
    pub(crate) fn start(connection: Connection, thread: &str) -> std::io::Result<Self> {
        let (queue, jobs) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || write_groups::<G>(connection, &jobs))?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queues `write` and waits until it is committed. Once queued it is committed even if the
    /// caller stops waiting.
    pub(crate) async fn commit(&self, write: G::Write) -> Result<(), G::Error> {
        let (committed, done) = tokio::sync::oneshot::channel();
        self.queue
            .as_ref()
            .ok_or_else(G::stopped)?
            .send(Job { write, committed })
            .map_err(|_| G::stopped())?;
        done.await.map_err(|_| G::stopped())?
    }

    /// Queues `write` to be committed with the next group, without waiting for it (a write
    /// nobody waits on, whose loss costs nothing but its redoing).
    pub(crate) fn enqueue(&self, write: G::Write) {
        let (committed, _) = tokio::sync::oneshot::channel();
        if let Some(queue) = &self.queue {
            let _ = queue.send(Job { write, committed });
        }
    }
}

impl<G: GroupCommit> Drop for GroupWriter<G> {
    /// Lets the thread commit what is queued and close the file, so that the file can be
    /// opened again as soon as its owner is gone.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn write_groups<G: GroupCommit>(
    mut connection: Connection,
    jobs: &std::sync::mpsc::Receiver<Job<G::Write, G::Error>>,
) {
    while let Ok(first) = jobs.recv() {
        let mut rows = G::rows(&first.write);
        let mut group = vec![first];
        while rows < G::MAX_ROWS {
            match jobs.try_recv() {
                Ok(job) => {
                    rows += G::rows(&job.write);
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        let (writes, waiters): (Vec<_>, Vec<_>) = group
            .into_iter()
            .map(|job| (job.write, job.committed))
            .unzip();
        let outcome = G::commit(&mut connection, &writes);
        for waiter in waiters {
            let _ = waiter.send(outcome.clone());
        }
    }
    if let Err(error) = connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)") {
        tracing::warn!(%error, "{}'s last checkpoint failed; the WAL keeps it", G::NAME);
    }
}
