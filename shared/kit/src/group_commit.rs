//! Group commit (docs/ledger.md, "Write paths"): on SQLite, independent writes
//! queued by many requests share one transaction and one commit (one `fsync` with
//! `synchronous=FULL`). A kind of write may apply a whole batch in a bulk form of its own
//! ([`BatchedWrite::write_batch`]); otherwise a batch is first applied without savepoints
//! and, if any write is refused, rolled back and redone with one savepoint per write, so
//! a refused write never undoes its neighbours. Callers are answered only after
//! the shared commit, so an answer still means "durable".
//!
//! On PostgreSQL each write runs alone at once: concurrent commits already share WAL
//! flushes there, and one queue would serialize the pool. A kind of write may decide
//! itself in one autocommitted statement there ([`BatchedWrite::autocommit`]: no `BEGIN`
//! and `COMMIT` round trips); otherwise, or when that statement leaves it undecided, it
//! runs in a transaction of its own; a write the database aborts over a conflict
//! (`crate::db::is_retryable_conflict`: 40001, 40P01) is run again from its start, with
//! backoff and a bounded number of attempts (docs/operations.md, "Conflicts and retries").

use std::future::Future;
use std::pin::Pin;

use crate::batch::Coalescer;
use crate::db::{Backend, Db, Writer, conflict_backoff, is_constraint_violation, is_retryable_conflict, is_undecided};
use sqlx::{Acquire, Any, AnyConnection, Transaction};

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

    /// The bulk form of a batch: applies every write of `batch` on `conn`, inside a
    /// transaction that holds the database's write lock (SQLite `BEGIN IMMEDIATE`: no
    /// other writer runs until it ends) and that the caller commits. Each write either
    /// takes effect or is refused leaving nothing behind; results in `batch` order. `Err`
    /// when the transaction itself failed (it is rolled back, no write takes effect); a
    /// constraint's refusal redoes the batch write by write instead, in savepoints.
    /// `Ok(None)`, the default, when this kind of write has no bulk form: the batch is
    /// then applied write by write.
    fn write_batch<'c>(_batch: &'c [Self], _conn: &'c mut AnyConnection) -> WriteFuture<'c, BulkResults<Self>>
    where
        Self: Sized,
    {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// A bulk form that opens and commits its own transaction on `writer` (through
    /// [`Writer::raw_transaction`]: `BEGIN IMMEDIATE` and `COMMIT` sent inside its own
    /// calls), tried first for every batch, even of one write. Results as
    /// [`BatchedWrite::write_batch`]; `Err` when it failed: nothing of it takes effect (a
    /// transaction it left open is rolled back before the writer is used again), and a
    /// constraint's refusal (a case the form does not decide) sends the batch down the
    /// write-by-write path, where it refuses only its own write. `Ok(None)`, the default,
    /// when `batch` has no such form: it is then applied by [`BatchedWrite::write_batch`]
    /// or write by write.
    fn commit_batch<'c>(_batch: &'c [Self], _writer: &'c mut Writer) -> WriteFuture<'c, BulkResults<Self>>
    where
        Self: Sized,
    {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// On PostgreSQL, the write as ONE autocommitted statement on `writer`, tried first
    /// (the implementation reports its outcome through [`Writer::finish`]):
    /// `Ok(Some(outcome))` when the statement decided the write (a refused write leaves
    /// nothing behind); `Ok(None)`, the default, to leave it to [`BatchedWrite::write`] in
    /// a transaction of its own (the statement did nothing), as does an error that
    /// [`is_undecided`] recognizes (the statement aborted itself, or lost a deadlock);
    /// any other `Err` when the statement failed (nothing of it took effect).
    fn autocommit<'c>(&'c self, _writer: &'c mut Writer) -> WriteFuture<'c, Autocommitted<Self>>
    where
        Self: Sized,
    {
        Box::pin(std::future::ready(Ok(None)))
    }

    /// Whether `refusal` is the database aborting the write's transaction over a conflict
    /// ([`is_retryable_conflict`]) rather than a refusal of the write itself: on
    /// PostgreSQL the write is then run again from its start. Default: never.
    fn is_conflict(_refusal: &Self::Refusal) -> bool
    where
        Self: Sized,
    {
        false
    }
}

/// What [`BatchedWrite::autocommit`] returns: `Ok(None)` when the transaction path decides.
pub type Autocommitted<W> = Result<Option<Outcome<W>>, sqlx::Error>;

/// A write's own result: it took effect, or it was refused.
pub type Outcome<W> = Result<<W as BatchedWrite>::Output, <W as BatchedWrite>::Refusal>;

/// The per-write results of a batch in its order.
pub type Results<W> = Vec<Outcome<W>>;

/// What [`BatchedWrite::write_batch`] returns: `Ok(None)` when there is no bulk form.
pub type BulkResults<W> = Result<Option<Results<W>>, sqlx::Error>;

/// The outcome of a submitted write: `Err` when its transaction (shared on SQLite) or its
/// one statement itself failed (the write did not take effect), else the write's own
/// result.
pub type Submitted<W> = Result<Outcome<W>, sqlx::Error>;

/// Applies [`BatchedWrite`]s, batching them on SQLite (see the module docs).
#[derive(Debug)]
pub struct GroupCommit<W: BatchedWrite> {
    db: Db,
    queue: Option<Coalescer<W, Submitted<W>>>,
}

impl<W: BatchedWrite> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        Self { db: self.db.clone(), queue: self.queue.clone() }
    }
}

impl<W: BatchedWrite> GroupCommit<W> {
    /// A committer over `db`; on SQLite it spawns the writer task, which applies up to
    /// `max_batch` queued writes per transaction and stops when every handle is dropped.
    pub fn new(db: Db, max_batch: usize) -> Self {
        let queue = (db.backend() == Backend::Sqlite).then(|| {
            let writer = db.clone();
            Coalescer::new(max_batch, move |batch| apply_batch(writer.clone(), batch))
        });
        Self { db, queue }
    }

    /// Applies `write` and answers after its transaction committed (or failed).
    pub async fn submit(&self, write: W) -> Submitted<W> {
        match &self.queue {
            Some(queue) => queue.submit(write).await.unwrap_or(Err(sqlx::Error::PoolClosed)),
            None => self.submit_alone(&write).await,
        }
    }

    /// On PostgreSQL: `write` alone, run again while the database aborts it over a conflict.
    async fn submit_alone(&self, write: &W) -> Submitted<W> {
        use backon::Retryable;
        let attempt = || async {
            let submitted = self.submit_once(write).await;
            let conflict = match &submitted {
                Err(error) => is_retryable_conflict(error),
                Ok(Err(refusal)) => W::is_conflict(refusal),
                Ok(Ok(_)) => false,
            };
            if conflict { Err(submitted) } else { Ok(submitted) }
        };
        match attempt.retry(conflict_backoff()).await {
            Ok(submitted) | Err(submitted) => submitted,
        }
    }

    /// One attempt of `write` alone: its autocommitted statement, else a transaction.
    async fn submit_once(&self, write: &W) -> Submitted<W> {
        let mut writer = self.db.writer().await?;
        match write.autocommit(&mut writer).await {
            Ok(Some(outcome)) => Ok(outcome),
            Ok(None) => apply_alone(writer, write).await,
            Err(error) if is_undecided(&error) => apply_alone(writer, write).await,
            Err(error) => Err(error),
        }
    }
}

/// One write, one transaction on `writer`.
async fn apply_alone<W: BatchedWrite>(mut writer: Writer, write: &W) -> Submitted<W> {
    let applied = apply_in(writer.begin().await?, write).await;
    writer.finish(applied)
}

/// Applies `write` in `tx` (a transaction or a savepoint): commits (releases) it when the
/// write took effect, rolls it back when the write was refused.
async fn apply_in<W: BatchedWrite>(mut tx: Transaction<'_, Any>, write: &W) -> Submitted<W> {
    let result = write.write(&mut tx).await;
    match result {
        Ok(_) => tx.commit().await?,
        Err(_) => tx.rollback().await?,
    }
    Ok(result)
}

async fn apply_batch<W: BatchedWrite>(db: Db, batch: Vec<W>) -> Vec<Submitted<W>> {
    let mut writer = match db.writer().await {
        Ok(writer) => writer,
        Err(error) => return failed(&batch, &error),
    };
    let applied = match W::commit_batch(&batch, &mut writer).await {
        Ok(Some(results)) => Ok(results),
        Err(error) if !is_constraint_violation(&error) => Err(error),
        _ if batch.len() == 1 => return vec![apply_alone(writer, &batch[0]).await],
        _ => apply_together(writer, &batch).await,
    };
    applied.map_or_else(|error| failed(&batch, &error), |results| results.into_iter().map(Ok).collect())
}

/// Every write of `batch` failed with the batch's `error`.
fn failed<W: BatchedWrite>(batch: &[W], error: &sqlx::Error) -> Vec<Submitted<W>> {
    tracing::warn!(error = %error, writes = batch.len(), "group commit failed; no write of the batch took effect");
    batch.iter().map(|_| Err(sqlx::Error::Protocol(format!("group commit failed: {error}")))).collect()
}

/// Every write of `batch` in one transaction: in its bulk form when it has one, else
/// optimistically, else (a refusal, or a constraint the bulk form met) with savepoints.
async fn apply_together<W: BatchedWrite>(mut writer: Writer, batch: &[W]) -> Result<Results<W>, sqlx::Error> {
    let mut tx = writer.begin().await?;
    let applied = match W::write_batch(batch, &mut tx).await {
        Ok(Some(results)) => Some(results),
        Ok(None) => apply_optimistically(&mut tx, batch).await?,
        // A constraint the bulk form does not decide: redone below, refusing only its write.
        Err(error) if is_constraint_violation(&error) => None,
        Err(error) => return Err(error),
    };
    let results = match applied {
        Some(results) => results,
        None => {
            tx.rollback().await?;
            tx = writer.begin().await?;
            apply_with_savepoints(&mut tx, batch).await?
        }
    };
    let committed = tx.commit().await;
    writer.finish(committed).map(|()| results)
}

/// Every write of `batch` without savepoints (two statements fewer per write); `Ok(None)`
/// when one was refused: `tx` must then be rolled back, for [`apply_with_savepoints`] to
/// redo the batch.
async fn apply_optimistically<W: BatchedWrite>(tx: &mut AnyConnection, batch: &[W]) -> BulkResults<W> {
    let mut results = Vec::with_capacity(batch.len());
    for write in batch {
        let result = write.write(tx).await;
        if result.is_err() {
            return Ok(None);
        }
        results.push(result);
    }
    Ok(Some(results))
}

/// Every write of `batch`, each in a savepoint of `tx`.
async fn apply_with_savepoints<W: BatchedWrite>(
    tx: &mut AnyConnection,
    batch: &[W],
) -> Result<Results<W>, sqlx::Error> {
    let mut results = Vec::with_capacity(batch.len());
    for write in batch {
        results.push(write_in_savepoint(tx, write).await?);
    }
    Ok(results)
}

/// Applies `write` in a savepoint of the transaction open on `conn`, rolled back when the
/// write is refused (for bulk forms that apply some writes of a batch one by one).
pub async fn write_in_savepoint<W: BatchedWrite>(conn: &mut AnyConnection, write: &W) -> Submitted<W> {
    apply_in(conn.begin().await?, write).await
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

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

    /// Inserts one value, refused when negative; its bulk form inserts a whole batch's
    /// accepted values with one statement and counts its uses in `bulk_batches`.
    #[derive(Debug)]
    struct InsertInBulk {
        value: i64,
        bulk_batches: Arc<AtomicUsize>,
    }

    impl BatchedWrite for InsertInBulk {
        type Output = i64;
        type Refusal = String;

        fn write<'c>(&'c self, conn: &'c mut AnyConnection) -> WriteFuture<'c, Result<i64, String>> {
            Box::pin(async move {
                if self.value < 0 {
                    return Err(format!("{} is negative", self.value));
                }
                sqlx::query("INSERT INTO t (v) VALUES ($1)")
                    .bind(self.value)
                    .execute(&mut *conn)
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(self.value)
            })
        }

        fn write_batch<'c>(batch: &'c [Self], conn: &'c mut AnyConnection) -> WriteFuture<'c, BulkResults<Self>> {
            Box::pin(async move {
                let accepted = batch.iter().map(|write| write.value).filter(|value| *value >= 0);
                let mut params = crate::db::Params::numbered();
                let rows: Vec<String> =
                    params.push_each(accepted)?.iter().map(|value| crate::db::params::tuple(&[*value])).collect();
                let sql = format!("INSERT INTO t (v) VALUES {}", rows.join(", "));
                sqlx::query_with(&sql, params.into_arguments()).execute(&mut *conn).await?;
                if let Some(write) = batch.first() {
                    write.bulk_batches.fetch_add(1, Ordering::SeqCst);
                }
                Ok(Some(
                    batch
                        .iter()
                        .map(|write| if write.value < 0 { Err("negative".into()) } else { Ok(write.value) })
                        .collect(),
                ))
            })
        }
    }

    /// Inserts its value in one autocommitted statement when it is 2 modulo 4, aborts its
    /// statement (undecided) when it is a multiple of 4, and leaves odd values to the
    /// transaction path, which inserts the value plus 1,000: the stored value tells which
    /// path wrote it.
    #[derive(Debug)]
    struct EvenAutocommitted(i64);

    impl BatchedWrite for EvenAutocommitted {
        type Output = i64;
        type Refusal = String;

        fn write<'c>(&'c self, conn: &'c mut AnyConnection) -> WriteFuture<'c, Result<i64, String>> {
            Box::pin(async move {
                let value = self.0 + 1000;
                let inserted = sqlx::query("INSERT INTO t (v) VALUES ($1)").bind(value).execute(&mut *conn).await;
                inserted.map(|_| value).map_err(|error| error.to_string())
            })
        }

        fn autocommit<'c>(&'c self, writer: &'c mut Writer) -> WriteFuture<'c, Autocommitted<Self>> {
            Box::pin(async move {
                if self.0 % 2 != 0 {
                    return Ok(None);
                }
                if self.0 % 4 == 0 {
                    writer.fetch_number(sqlx::query("SELECT 1 / 0")).await?;
                }
                let inserted = sqlx::query("INSERT INTO t (v) VALUES ($1)").bind(self.0).execute(&mut **writer).await;
                writer.finish(inserted).map(|_| Some(Ok(self.0)))
            })
        }
    }

    async fn database() -> anyhow::Result<(TestDatabase, Db)> {
        let test = TestDatabase::new().await?;
        let db = Db::connect(&test.url, &DbOptions::default()).await?;
        sqlx::query("CREATE TABLE t (v BIGINT NOT NULL UNIQUE)").execute(&mut *db.writer().await?).await?;
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
    async fn a_batch_without_refusals_commits_every_write() -> anyhow::Result<()> {
        let (_test, db) = database().await?;
        let commit = GroupCommit::new(db.clone(), 8);
        let writes: Vec<_> = (0..20_i64)
            .map(|value| {
                let commit = commit.clone();
                tokio::spawn(async move { commit.submit(InsertAll(vec![value])).await })
            })
            .collect();
        for write in writes {
            assert_eq!(write.await??.ok(), Some(1));
        }
        assert_eq!(stored(&db).await?, (0..20).collect::<Vec<i64>>());
        Ok(())
    }

    #[tokio::test]
    async fn a_bulk_form_applies_whole_batches_and_answers_each_write() -> anyhow::Result<()> {
        let (_test, db) = database().await?;
        let commit = GroupCommit::new(db.clone(), 16);
        let bulk_batches = Arc::new(AtomicUsize::new(0));
        let writes: Vec<_> = (0..40_i64)
            .map(|i| {
                let (commit, bulk_batches) = (commit.clone(), Arc::clone(&bulk_batches));
                let value = if i % 4 == 0 { -i - 1 } else { i };
                tokio::spawn(async move { (value, commit.submit(InsertInBulk { value, bulk_batches }).await) })
            })
            .collect();
        for write in writes {
            let (value, result) = write.await?;
            assert_eq!(result?.ok(), (value >= 0).then_some(value));
        }
        assert_eq!(stored(&db).await?, (0..40).filter(|i| i % 4 != 0).collect::<Vec<i64>>());
        if db.backend() == Backend::Sqlite {
            assert!(bulk_batches.load(Ordering::SeqCst) > 0, "40 concurrent writes formed no batch");
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_constraint_the_bulk_form_meets_refuses_only_its_write() -> anyhow::Result<()> {
        let (_test, db) = database().await?;
        let commit = GroupCommit::new(db.clone(), 16);
        let bulk_batches = Arc::new(AtomicUsize::new(0));
        let writes: Vec<_> = [5_i64, 6, 5, 7]
            .into_iter()
            .map(|value| {
                let (commit, bulk_batches) = (commit.clone(), Arc::clone(&bulk_batches));
                tokio::spawn(async move { commit.submit(InsertInBulk { value, bulk_batches }).await })
            })
            .collect();
        let mut outcomes = Vec::new();
        for write in writes {
            outcomes.push(write.await??.ok());
        }
        // On SQLite the bulk INSERT of the one batch meets the UNIQUE constraint; write by
        // write, the second 5 alone is refused. PostgreSQL runs the writes at once, so
        // either 5 may win there.
        assert_eq!((outcomes[1], outcomes[3]), (Some(6), Some(7)));
        let fives = [outcomes[0], outcomes[2]];
        assert_eq!(fives.iter().flatten().collect::<Vec<_>>(), vec![&5], "{outcomes:?}");
        if db.backend() == Backend::Sqlite {
            assert_eq!(fives, [Some(5), None]);
        }
        assert_eq!(stored(&db).await?, vec![5, 6, 7]);
        Ok(())
    }

    #[tokio::test]
    async fn on_postgresql_only_a_write_its_statement_decides_skips_the_transaction_path() -> anyhow::Result<()> {
        let (_test, db) = database().await?;
        let commit = GroupCommit::new(db.clone(), 16);
        let mut answers = Vec::new();
        for value in 1..=8 {
            answers.push(commit.submit(EvenAutocommitted(value)).await?.ok());
        }
        let postgres = db.backend() == Backend::Postgres;
        let expected: Vec<i64> =
            (1..=8).map(|value| if postgres && value % 4 == 2 { value } else { value + 1000 }).collect();
        assert_eq!(answers, expected.iter().copied().map(Some).collect::<Vec<_>>());
        let mut stored_values = stored(&db).await?;
        stored_values.sort_by_key(|value| value % 1000);
        assert_eq!(stored_values, expected);
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
