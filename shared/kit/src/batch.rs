//! Request coalescing: callers queue requests; one task flushes everything queued so far
//! (up to a limit) in one call while the next requests queue behind it. The basis of the
//! group commits ([`crate::group_commit`]): under load a batch forms by itself, and a
//! lone request is flushed at once, never delayed by a timer.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

type Queued<Request, Response> = (Request, oneshot::Sender<Response>);

/// A queue in front of a flush function (see the module docs).
pub struct Coalescer<Request, Response> {
    queue: mpsc::UnboundedSender<Queued<Request, Response>>,
}

impl<Request, Response> std::fmt::Debug for Coalescer<Request, Response> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_struct("Coalescer").field("open", &!self.queue.is_closed()).finish()
    }
}

impl<Request, Response> Clone for Coalescer<Request, Response> {
    fn clone(&self) -> Self {
        Self { queue: self.queue.clone() }
    }
}

impl<Request: Send + 'static, Response: Send + 'static> Coalescer<Request, Response> {
    /// Spawns the flushing task. `flush` receives 1..=`max_batch` requests in queue order
    /// and must return one response per request, in the same order. The task ends when
    /// every handle is dropped.
    pub fn new<Flush, Flushed>(max_batch: usize, flush: Flush) -> Self
    where
        Flush: Fn(Vec<Request>) -> Flushed + Send + 'static,
        Flushed: Future<Output = Vec<Response>> + Send + 'static,
    {
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(drain(receiver, max_batch.max(1), flush));
        Self { queue }
    }

    /// Queues `request` and waits for its response; `None` when the flushing task is gone
    /// (shut down) or did not answer.
    pub async fn submit(&self, request: Request) -> Option<Response> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((request, reply)).ok()?;
        answer.await.ok()
    }
}

async fn drain<Request, Response, Flush, Flushed>(
    mut receiver: mpsc::UnboundedReceiver<Queued<Request, Response>>,
    max_batch: usize,
    flush: Flush,
) where
    Flush: Fn(Vec<Request>) -> Flushed,
    Flushed: Future<Output = Vec<Response>> + Send + 'static,
    Response: Send + 'static,
{
    while let Some(first) = receiver.recv().await {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match receiver.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (requests, replies): (Vec<_>, Vec<_>) = batch.into_iter().unzip();
        // Its own task: a panicking flush fails its batch (the callers see `None`), not the queue.
        match tokio::spawn(flush(requests)).await {
            Ok(responses) => {
                for (reply, response) in replies.into_iter().zip(responses) {
                    let _ = reply.send(response);
                }
            }
            Err(error) => tracing::error!(error = %error, requests = replies.len(), "a batch flush failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn requests_queued_together_are_flushed_together_in_order() {
        let (sizes, mut seen) = mpsc::unbounded_channel();
        let coalescer = Coalescer::new(4, move |requests: Vec<u32>| {
            let _ = sizes.send(requests.len());
            async move { requests.into_iter().map(|request| request * 10).collect() }
        });
        let calls: Vec<_> = (0..10_u32)
            .map(|request| {
                let coalescer = coalescer.clone();
                tokio::spawn(async move { coalescer.submit(request).await })
            })
            .collect();
        for (request, call) in (0..10_u32).zip(calls) {
            assert_eq!(call.await.ok().flatten(), Some(request * 10));
        }
        drop(coalescer);
        let mut batches = Vec::new();
        while let Some(size) = seen.recv().await {
            batches.push(size);
        }
        // Spawned on a single-threaded runtime, all ten are queued before the first flush.
        assert_eq!(batches, vec![4, 4, 2]);
    }

    #[tokio::test]
    async fn a_panicking_flush_fails_its_batch_only() {
        let coalescer = Coalescer::new(1, |requests: Vec<u32>| async move {
            assert_ne!(requests, vec![13], "unlucky request");
            requests
        });
        assert_eq!(coalescer.submit(13).await, None);
        assert_eq!(coalescer.submit(14).await, Some(14));
    }

    #[tokio::test]
    async fn a_missing_response_answers_none() {
        let coalescer = Coalescer::new(8, |_requests: Vec<u32>| async { Vec::<u32>::new() });
        assert_eq!(coalescer.submit(1).await, None);
    }
}
