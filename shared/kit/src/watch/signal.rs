//! The wake-up of a stream's watchers (docs/streams.md): this process's commits signal it
//! directly; on PostgreSQL a relay task also announces them to every replica with one
//! `NOTIFY` after the fact (never inside a write transaction, where NOTIFY would
//! serialize commits on its global lock), coalescing commits that arrive meanwhile, and
//! a listener wakes this process's watchers on the other replicas' announcements.

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::StreamTable;
use crate::db::{Backend, Db};

/// Pause before the PostgreSQL listener or notifier goes on after an error.
const RETRY: Duration = Duration::from_secs(1);

/// Counts wake-ups; watchers wait for it to change.
#[derive(Debug, Clone)]
pub struct Appended {
    /// Any commit, of this process or (PostgreSQL) of another replica.
    wake: Arc<watch::Sender<u64>>,
    /// Commits of this process, for the notifier.
    local: Arc<watch::Sender<u64>>,
}

impl Default for Appended {
    fn default() -> Self {
        Self { wake: Arc::new(watch::channel(0).0), local: Arc::new(watch::channel(0).0) }
    }
}

fn bump(sender: &watch::Sender<u64>) {
    sender.send_modify(|count| *count = count.wrapping_add(1));
}

impl Appended {
    /// Call after this process committed rows of the stream: wakes its watchers and, on
    /// PostgreSQL, the other replicas'.
    pub fn committed(&self) {
        bump(&self.local);
        bump(&self.wake);
    }

    /// A receiver that changes after every wake-up.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.wake.subscribe()
    }

    /// On PostgreSQL, relays commits between replicas (module docs) until `shutdown`;
    /// nothing on SQLite, whose writers are all in this process. `url` is the database's.
    pub fn spawn_relay(&self, table: StreamTable, db: &Db, url: &str, shutdown: CancellationToken) {
        if db.backend() != Backend::Postgres {
            return;
        }
        let (listening, notifying) = (self.clone(), self.clone());
        let (url, db, stop) = (url.to_owned(), db.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                () = stop.cancelled() => {}
                () = listening.listen(&url, table.channel) => {}
            }
        });
        tokio::spawn(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = notifying.notify(&db, table.channel) => {}
            }
        });
    }

    /// Announces this process's commits, one NOTIFY per wake-up of the local counter.
    async fn notify(&self, db: &Db, channel: &str) {
        let mut local = self.local.subscribe();
        let sql = format!("NOTIFY {channel}");
        while local.changed().await.is_ok() {
            if let Err(error) = sqlx::query(&sql).execute(db.pool()).await {
                tracing::warn!(%error, channel, "stream notification failed");
                tokio::time::sleep(RETRY).await;
            }
        }
    }

    /// Relays other replicas' announcements forever, reconnecting after errors (watchers
    /// also re-read on a slow timer, so one lost meanwhile only delays them).
    async fn listen(&self, url: &str, channel: &str) {
        loop {
            if let Err(error) = relay(url, channel, &self.wake).await {
                tracing::warn!(%error, channel, "stream listener failed; reconnecting");
            }
            bump(&self.wake);
            tokio::time::sleep(RETRY).await;
        }
    }
}

async fn relay(url: &str, channel: &str, wake: &watch::Sender<u64>) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect(url).await?;
    listener.listen(channel).await?;
    loop {
        listener.recv().await?;
        bump(wake);
    }
}
