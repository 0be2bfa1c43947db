//! Limits of server streams (docs/gateway.md, "Streams"): how many streams one user and
//! the whole gateway hold open at once (`gateway.streams`), and their end at shutdown.
//! A stream takes a [`StreamPermit`] as it opens and gives it back when it ends; it is not
//! a request in flight (`gateway.max_in_flight` bounds short calls only), so a stream
//! that lives for hours holds no in-flight permit.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_stream::Stream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::Status;

use crate::config::StreamsConfig;
use crate::error::GatewayError;
use crate::metrics::OPEN_STREAMS;

/// Open streams by user.
type Counts = Arc<Mutex<HashMap<i64, usize>>>;

/// The per-user and per-gateway limits of open streams, and the signal that ends them all.
#[derive(Debug)]
pub struct StreamLimits {
    open: Arc<Semaphore>,
    max: usize,
    per_user: usize,
    users: Counts,
    closing: CancellationToken,
}

impl StreamLimits {
    /// Limits of `config` (`per_user` and `max`, each at least 1).
    pub fn new(config: &StreamsConfig) -> Self {
        let max = config.max.clamp(1, Semaphore::MAX_PERMITS);
        Self {
            open: Arc::new(Semaphore::new(max)),
            max,
            per_user: config.per_user.max(1),
            users: Counts::default(),
            closing: CancellationToken::new(),
        }
    }

    /// A permit for one more stream of `user_id`, released when dropped; over either limit
    /// `TOO_MANY_STREAMS` (`scope` = `gateway` or `user`).
    pub fn acquire(&self, user_id: i64) -> Result<StreamPermit, GatewayError> {
        let open = self
            .open
            .clone()
            .try_acquire_owned()
            .map_err(|_| GatewayError::TooManyStreams { scope: "gateway", limit: self.max })?;
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let count = users.entry(user_id).or_default();
        if *count >= self.per_user {
            return Err(GatewayError::TooManyStreams { scope: "user", limit: self.per_user });
        }
        *count += 1;
        metrics::gauge!(OPEN_STREAMS).increment(1.0);
        Ok(StreamPermit { user_id, users: self.users.clone(), _open: open, closing: self.closing.clone() })
    }

    /// Ends every open stream, now and from then on (a permit's [`StreamPermit::guard`]).
    pub fn close(&self) {
        self.closing.cancel();
    }

    /// Ends every open stream when `shutdown` is cancelled: the server's graceful shutdown
    /// waits for open streams, so they must end first.
    pub fn close_on(&self, shutdown: CancellationToken) {
        let closing = self.closing.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            closing.cancel();
        });
    }

    /// Streams open now, every user together.
    pub fn open(&self) -> usize {
        self.max - self.open.available_permits()
    }
}

/// One open stream of one user, counted until dropped.
#[derive(Debug)]
pub struct StreamPermit {
    user_id: i64,
    users: Counts,
    _open: OwnedSemaphorePermit,
    closing: CancellationToken,
}

impl StreamPermit {
    /// Cancelled when the gateway shuts down: a stream must end then.
    pub fn closing(&self) -> CancellationToken {
        self.closing.clone()
    }

    /// `stream`, holding this permit until it ends (or is dropped), cut short at shutdown
    /// with `UNAVAILABLE` (the client reconnects with its last cursor).
    pub fn guard<S>(self, stream: S) -> Guarded<S> {
        let closing = Box::pin(self.closing.clone().cancelled_owned());
        Guarded { stream, closing, permit: Some(self) }
    }
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = users.get_mut(&self.user_id) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                users.remove(&self.user_id);
            }
        }
        metrics::gauge!(OPEN_STREAMS).decrement(1.0);
    }
}

/// A stream that holds its [`StreamPermit`] and ends at shutdown. Messages pass one by
/// one, polled only when the client's side asks for the next (no buffer of its own).
pub struct Guarded<S> {
    stream: S,
    closing: Pin<Box<WaitForCancellationFutureOwned>>,
    permit: Option<StreamPermit>,
}

impl<S, T> Stream for Guarded<S>
where
    S: Stream<Item = Result<T, Status>> + Unpin,
{
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.permit.is_none() {
            return Poll::Ready(None);
        }
        if self.closing.as_mut().poll(context).is_ready() {
            self.permit = None;
            return Poll::Ready(Some(Err(GatewayError::ShuttingDown.into())));
        }
        let next = Pin::new(&mut self.stream).poll_next(context);
        if matches!(next, Poll::Ready(None)) {
            self.permit = None;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use economy_kit::error::reason;

    use super::*;

    fn limits(per_user: usize, max: usize) -> StreamLimits {
        StreamLimits::new(&StreamsConfig { per_user, max, heartbeat_secs: 15 })
    }

    fn refusal(outcome: Result<StreamPermit, GatewayError>) -> (Option<String>, String) {
        let status = Status::from(outcome.expect_err("refused"));
        (reason(&status), status.message().to_owned())
    }

    #[test]
    fn a_user_holds_at_most_per_user_streams_and_a_released_one_frees_its_place() {
        let limits = limits(2, 10);
        let (first, _second) = (limits.acquire(7).expect("first"), limits.acquire(7).expect("second"));
        let (reason, message) = refusal(limits.acquire(7));
        assert_eq!(reason.as_deref(), Some("TOO_MANY_STREAMS"));
        assert!(message.contains("user limit 2"), "{message}");
        let _other = limits.acquire(8).expect("another user has their own limit");
        drop(first);
        let _again = limits.acquire(7).expect("a place was freed");
        assert_eq!(limits.open(), 3);
    }

    #[test]
    fn the_gateway_holds_at_most_max_streams() {
        let limits = limits(1, 2);
        let held = [limits.acquire(1).expect("one"), limits.acquire(2).expect("two")];
        let (reason, message) = refusal(limits.acquire(3));
        assert_eq!(reason.as_deref(), Some("TOO_MANY_STREAMS"));
        assert!(message.contains("gateway limit 2"), "{message}");
        drop(held);
        assert_eq!(limits.open(), 0);
        // A refusal by the gateway's limit did not count against the user.
        let _three = limits.acquire(3).expect("user 3 holds none");
    }

    #[tokio::test]
    async fn a_guarded_stream_releases_its_permit_at_its_end_and_ends_at_shutdown() {
        use tokio_stream::StreamExt;

        let limits = limits(1, 10);
        let mut finished = limits.acquire(1).expect("permit").guard(tokio_stream::iter([Ok::<u8, Status>(1)]));
        assert_eq!(finished.next().await.map(|item| item.ok()), Some(Some(1)));
        assert!(finished.next().await.is_none());
        assert_eq!(limits.open(), 0, "released at the end, before the stream is dropped");

        let mut endless = limits.acquire(1).expect("permit").guard(tokio_stream::pending::<Result<u8, Status>>());
        limits.close();
        let end = endless.next().await.expect("an answer").expect_err("an error");
        assert_eq!(end.code(), tonic::Code::Unavailable);
        assert!(endless.next().await.is_none());
        assert_eq!(limits.open(), 0);
    }
}
