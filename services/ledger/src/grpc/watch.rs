//! `WatchEntries` serving (docs/ledger.md, "Watching entries"): the ledger store as a
//! stream source of the shared serving loop (`economy_kit::watch`, docs/streams.md).

use economy_kit::watch::{Committed, Cursor, EventStream, Source, Start, StartPoint, WatchOptions};
use economy_proto::ledger::v1 as pb;
use pb::watch_entries_response::Kind;
use tonic::Status;

use super::convert;
use crate::domain::entry::Entry;
use crate::store::{EntryWatch, LedgerStore};

/// The responses of one stream.
pub type EntryStream = EventStream<pb::WatchEntriesResponse>;

/// Starts a stream of `filter`'s entries from `start`.
pub async fn open(
    store: LedgerStore,
    filter: EntryWatch,
    start: Start,
    options: &WatchOptions,
) -> Result<EntryStream, Status> {
    let wake = store.appended();
    economy_kit::watch::open(Entries { store, filter }, start, wake, options).await
}

/// The entries of one filter.
struct Entries {
    store: LedgerStore,
    filter: EntryWatch,
}

impl Source for Entries {
    type Item = Entry;
    type Response = pb::WatchEntriesResponse;

    async fn horizon(&self) -> Result<i64, Status> {
        Ok(self.store.horizon().await?)
    }

    async fn start_point(&self) -> Result<StartPoint, Status> {
        Ok(self.store.start_point().await?)
    }

    async fn page(
        &self,
        after: &Cursor,
        horizon: i64,
        committed: Option<&Committed>,
        limit: i64,
    ) -> Result<Vec<(Cursor, Entry)>, Status> {
        Ok(self.store.entries_after(&self.filter, after, horizon, committed, limit).await?)
    }

    fn event(entry: Entry, cursor: String) -> Self::Response {
        pb::WatchEntriesResponse { kind: Some(Kind::Entry(convert::transaction(&entry))), cursor }
    }

    fn heartbeat(sent_at: prost_types::Timestamp, cursor: String) -> Self::Response {
        pb::WatchEntriesResponse { kind: Some(Kind::Heartbeat(pb::WatchHeartbeat { sent_at: Some(sent_at) })), cursor }
    }
}
