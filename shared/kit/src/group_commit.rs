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

    /// True when the write is one statement: alone it runs without a transaction, and in
    /// a batch without a savepoint (SQLite undoes a statement refused by a constraint by
    /// itself and the transaction goes on).
    fn is_single_statement(&self) -> bool {
        false
    }

    /// For a one-statement write: true when `refusal` is such a constraint refusal. Any
    /// other refusal may have ended SQLite's transaction, so it fails the whole batch.
    fn refusal_keeps_transaction(_refusal: &Self::Refusal) -> bool {
        false
    }
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

/// One write, one transaction (none for a single statement: it is atomic alone).
async fn apply_alone<W: BatchedWrite>(db: &Db, write: &W) -> Submitted<W> {
    if write.is_single_statement() {
        let mut conn = db.writer().acquire().await?;
        return Ok(write.write(&mut conn).await);
    }
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
    if write.is_single_statement() {
        let result = write.write(tx).await;
        if let Err(refusal) = &result
            && !W::refusal_keeps_transaction(refusal)
        {
            return Err(sqlx::Error::Protocol("a write of the batch failed outside its savepoint".into()));
        }
        return Ok(result);
    }
    let mut savepoint = tx.begin().await?;
    let result = write.write(&mut savepoint).await;
    match result {
        Ok(_) => savepoint.commit().await?,
        Err(_) => savepoint.rollback().await?,
    }
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::DbOptions;
    use crate::testing::TestDatabase;

    /// Inserts `rows` values one statement each; refused (and undone) when any is negative.
    #[derive(Debug)]
    struct InsertAll(Vec<i64>);

    impl BatchedWrite for InsertAll {
        type Output = usize;
        type Refusal = String;

        fn write<'c>(&'c self, conn: &'c mut AnyConnection) -> WriteFuture<'c, Result<usize, String>> {
            Box::pin(async move {
                for value in &self.0 {
                    sqlx::query("INSERT INTO t (v) VALUES ($1)")
                        .bind(value)
                        .execute(&mut *conn)
                        .await
                        .map_err(|error| error.to_string())?;
                    if *value < 0 {
                        return Err(format!("{value} is negative"));
                    }
                }
                Ok(self.0.len())
            })
        }
    }

    async fn database() -> anyhow::Result<(TestDatabase, Db)> {
        let test = TestDatabase::new().await?;
        let db = Db::connect(&test.url, &DbOptions::default()).await?;
        sqlx::query("CREATE TABLE t (v BIGINT NOT NULL UNIQUE)").execute(db.writer()).await?;
        Ok((test, db))
    }

    async fn stored(db: &Db) -> anyhow::Result<Vec<i64>> {
        let rows: Vec<(i64,)> = sqlx::query_as("SELECT v FROM t ORDER BY v").fetch_all(db.pool()).await?;
        Ok(rows.into_iter().map(|(v,)| v).collect())
    }

    #[tokio::test]
    async fn a_refused_write_is_undone_without_undoing_its_batch() -> anyhow::Result<()> {
        let (_test, db) = database().await?;
        let commit = GroupCommit::new(db.clone(), 16);
        let writes = (0..40_i64).map(|i| {
            let commit = commit.clone();
            // Every fifth write inserts a value, then is refused by its negative twin.
            let values = if i % 5 == 0 { vec![1000 + i, -i - 1] } else { vec![i, 100 + i] };
            tokio::spawn(async move { commit.submit(InsertAll(values)).await })
        });
        let mut refused = 0;
        for write in writes.collect::<Vec<_>>() {
            match write.await?? {
                Ok(rows) => assert_eq!(rows, 2),
                Err(_) => refused += 1,
            }
        }
        assert_eq!(refused, 8);
        let expected: Vec<i64> = {
            let mut values: Vec<i64> = (0..40).filter(|i| i % 5 != 0).flat_map(|i| [i, 100 + i]).collect();
            values.sort_unstable();
            values
        };
        assert_eq!(stored(&db).await?, expected);
        Ok(())
    }

    #[tokio::test]
    async fn a_write_refused_by_a_constraint_is_reported_to_its_caller_only() -> anyhow::Result<()> {
        let (_test, db) = database().await?;
        let commit = GroupCommit::new(db.clone(), 16);
        let writes: Vec<_> = [1_i64, 2, 1, 3]
            .into_iter()
            .map(|value| {
                let commit = commit.clone();
                tokio::spawn(async move { commit.submit(InsertAll(vec![value])).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for write in writes {
            outcomes.push(write.await??.is_ok());
        }
        assert_eq!(outcomes.iter().filter(|ok| **ok).count(), 3, "{outcomes:?}");
        assert_eq!(stored(&db).await?, vec![1, 2, 3]);
        Ok(())
    }
}
