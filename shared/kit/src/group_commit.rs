//! Group commit (BENCHMARKS.md, Next 3): on SQLite, independent writes queued by many
//! requests share one transaction and one commit (one `fsync` with `synchronous=FULL`),
//! each inside its own savepoint so a refused write never undoes its neighbours. Callers
//! are answered only after the shared commit, so an answer still means "durable".
//!
//! On PostgreSQL each write runs in its own transaction at once: concurrent commits
//! already share WAL flushes there, and one queue would serialize the pool.

use std::future::Future;
use std::pin::Pin;

use sqlx::{Any, AnyConnection, Transaction};
use tokio::sync::{mpsc, oneshot};

use crate::db::{Backend, Db};

/// A boxed future borrowing the connection.
pub type WriteFuture<'c, T> = Pin<Box<dyn Future<Output = T> + Send + 'c>>;

/// One write that can share a transaction with others.
pub trait BatchedWrite: Send + Sync + 'static {
    /// What a write that took effect returns.
    type Output: Send + 'static;
    /// Why a write was refused; everything it did is rolled back (to its savepoint).
    type Refusal: Send + 'static;

    /// Runs the write's statements on `conn`, inside a transaction the caller commits.
    fn write<'c>(&'c self, conn: &'c mut AnyConnection) -> WriteFuture<'c, Result<Self::Output, Self::Refusal>>;
}

/// The outcome of a submitted write: `Err` when the shared transaction itself failed (the
/// write did not take effect), else the write's own result.
pub type Submitted<W> = Result<Result<<W as BatchedWrite>::Output, <W as BatchedWrite>::Refusal>, sqlx::Error>;

struct Queued<W: BatchedWrite> {
    write: W,
    reply: oneshot::Sender<Submitted<W>>,
}

/// Applies [`BatchedWrite`]s, batching them on SQLite (see the module docs).
#[derive(Debug)]
pub struct GroupCommit<W: BatchedWrite> {
    db: Db,
    queue: Option<mpsc::UnboundedSender<Queued<W>>>,
}

impl<W: BatchedWrite> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        Self { db: self.db.clone(), queue: self.queue.clone() }
    }
}

impl<W: BatchedWrite> GroupCommit<W> {
    /// A committer over `db`; on SQLite it spawns the writer task, which drains up to
    /// `max_batch` queued writes per transaction and stops when every handle is dropped.
    pub fn new(db: Db, max_batch: usize) -> Self {
        let queue = (db.backend() == Backend::Sqlite).then(|| {
            let (sender, receiver) = mpsc::unbounded_channel();
            tokio::spawn(drain(db.clone(), receiver, max_batch.max(1)));
            sender
        });
        Self { db, queue }
    }

    /// Applies `write` and answers after its transaction committed (or failed).
    pub async fn submit(&self, write: W) -> Submitted<W> {
        let Some(queue) = &self.queue else {
            return apply_alone(&self.db, &write).await;
        };
        let (reply, answer) = oneshot::channel();
        queue.send(Queued { write, reply }).map_err(|_| closed())?;
        answer.await.map_err(|_| closed())?
    }
}

fn closed() -> sqlx::Error {
    sqlx::Error::PoolClosed
}

/// One write, one transaction.
async fn apply_alone<W: BatchedWrite>(db: &Db, write: &W) -> Submitted<W> {
    let mut tx = db.begin_write().await?;
    let result = write.write(&mut tx).await;
    match result {
        Ok(_) => tx.commit().await?,
        Err(_) => tx.rollback().await?,
    }
    Ok(result)
}

async fn drain<W: BatchedWrite>(db: Db, mut receiver: mpsc::UnboundedReceiver<Queued<W>>, max_batch: usize) {
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        apply_batch(&db, batch).await;
    }
}

async fn apply_batch<W: BatchedWrite>(db: &Db, batch: Vec<Queued<W>>) {
    if let [_] = batch.as_slice() {
        for queued in batch {
            let _ = queued.reply.send(apply_alone(db, &queued.write).await);
        }
        return;
    }
    match apply_together(db, &batch).await {
        Ok(results) => {
            for (queued, result) in batch.into_iter().zip(results) {
                let _ = queued.reply.send(Ok(result));
            }
        }
        Err(error) => {
            tracing::warn!(error = %error, writes = batch.len(), "group commit failed; no write of the batch took effect");
            for queued in batch {
                let _ = queued.reply.send(Err(sqlx::Error::Protocol(format!("group commit failed: {error}"))));
            }
        }
    }
}

type Results<W> = Vec<Result<<W as BatchedWrite>::Output, <W as BatchedWrite>::Refusal>>;

/// Every write of `batch` in one transaction, each in a savepoint.
async fn apply_together<W: BatchedWrite>(db: &Db, batch: &[Queued<W>]) -> Result<Results<W>, sqlx::Error> {
    let mut tx = db.begin_write().await?;
    let mut results = Vec::with_capacity(batch.len());
    for queued in batch {
        results.push(apply_in_savepoint(&mut tx, &queued.write).await?);
    }
    tx.commit().await?;
    Ok(results)
}

async fn apply_in_savepoint<W: BatchedWrite>(
    tx: &mut Transaction<'static, Any>,
    write: &W,
) -> Result<Result<W::Output, W::Refusal>, sqlx::Error> {
    use sqlx::Acquire;
    let mut savepoint = tx.begin().await?;
    let result = write.write(&mut savepoint).await;
    match result {
        Ok(_) => savepoint.commit().await?,
        Err(_) => savepoint.rollback().await?,
    }
    Ok(result)
}
