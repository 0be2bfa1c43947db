//! `WatchItemEvents` serving (docs/items.md, "Watching events"): the items store as a
//! stream source of the shared serving loop (`economy_kit::watch`, docs/streams.md).

use economy_kit::watch::{Committed, Cursor, EventStream, Source, Start, StartPoint, WatchOptions};
use economy_proto::items::v1 as pb;
use pb::watch_item_events_response::Kind;
use tonic::Status;

use super::convert;
use crate::domain::event::Event;
use crate::domain::watch::WatchFilter;
use crate::store::ItemStore;

/// The responses of one stream.
pub type ItemEventStream = EventStream<pb::WatchItemEventsResponse>;

/// Starts a stream of `filter`'s events from `start`.
pub async fn open(
    store: ItemStore,
    filter: WatchFilter,
    start: Start,
    options: &WatchOptions,
) -> Result<ItemEventStream, Status> {
    let wake = store.appended();
    economy_kit::watch::open(ItemEvents { store, filter }, start, wake, options).await
}

/// The events of one filter.
struct ItemEvents {
    store: ItemStore,
    filter: WatchFilter,
}

impl Source for ItemEvents {
    type Item = Event;
    type Response = pb::WatchItemEventsResponse;

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
    ) -> Result<Vec<(Cursor, Event)>, Status> {
        Ok(self.store.events_after(&self.filter, after, horizon, committed, limit).await?)
    }

    fn event(event: Event, cursor: String) -> Self::Response {
        pb::WatchItemEventsResponse { kind: Some(Kind::Event(convert::event(&event))), cursor }
    }

    fn heartbeat(sent_at: prost_types::Timestamp, cursor: String) -> Self::Response {
        pb::WatchItemEventsResponse {
            kind: Some(Kind::Heartbeat(pb::WatchHeartbeat { sent_at: Some(sent_at) })),
            cursor,
        }
    }
}
