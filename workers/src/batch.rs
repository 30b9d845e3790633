//! Coalescing: work for one key (one group) that arrives at about the same time in one worker
//! process is sent upstream as one call. The first arrival leads: it waits a little (the
//! linger) for more, or until the batch is full, then makes the call for everyone and hands
//! each their own result. Each request keeps its own job, receipt, audit events and commit;
//! only the upstream call is shared.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

struct Pending<I, O> {
    items: Vec<(I, oneshot::Sender<O>)>,
    full: Arc<Notify>,
}

struct Batches<I, O> {
    /// The batch of each key that still takes items.
    open: HashMap<String, u64>,
    batches: HashMap<u64, Pending<I, O>>,
    next: u64,
}

impl<I, O> Default for Batches<I, O> {
    fn default() -> Self {
        Self { open: HashMap::new(), batches: HashMap::new(), next: 0 }
    }
}

/// Gathers items submitted for the same key into batches of at most `max`.
pub struct Coalescer<I, O> {
    pending: Arc<Mutex<Batches<I, O>>>,
    max: usize,
    linger: Duration,
}

impl<I, O> Clone for Coalescer<I, O> {
    fn clone(&self) -> Self {
        Self { pending: self.pending.clone(), max: self.max, linger: self.linger }
    }
}

/// The leader's batch was dropped before it answered (its task was cancelled).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Abandoned;

impl<I: Send + 'static, O: Send + 'static> Coalescer<I, O> {
    /// Batches of at most `max` items (at least 1); the leader waits at most `linger` for more.
    pub fn new(max: usize, linger: Duration) -> Self {
        Self { pending: Arc::default(), max: max.max(1), linger }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Batches<I, O>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Submits one item and waits for its result. When this item leads its batch, `flush`
    /// runs with every item of the batch (in arrival order) and must return one result per
    /// item, in the same order; otherwise `flush` is dropped unused.
    pub async fn submit<F, Fut>(&self, key: &str, item: I, flush: F) -> Result<O, Abandoned>
    where
        F: FnOnce(Vec<I>) -> Fut,
        Fut: Future<Output = Vec<O>>,
    {
        let (tx, rx) = oneshot::channel();
        let lead = {
            let mut b = self.lock();
            let open = b.open.get(key).copied();
            match open.and_then(|id| b.batches.get_mut(&id).map(|p| (id, p))) {
                Some((_, p)) => {
                    p.items.push((item, tx));
                    if p.items.len() >= self.max {
                        // full: it takes no more; the next item starts a new batch
                        p.full.notify_one();
                        b.open.remove(key);
                    }
                    None
                }
                None => {
                    let id = b.next;
                    b.next += 1;
                    let full = Arc::new(Notify::new());
                    b.batches.insert(id, Pending { items: vec![(item, tx)], full: full.clone() });
                    if self.max > 1 {
                        b.open.insert(key.to_owned(), id);
                    }
                    Some((id, full))
                }
            }
        };
        if let Some((id, full)) = lead {
            if self.max > 1 {
                tokio::select! {
                    () = tokio::time::sleep(self.linger) => {}
                    () = full.notified() => {}
                }
            }
            let batch = {
                let mut b = self.lock();
                if b.open.get(key) == Some(&id) {
                    b.open.remove(key);
                }
                b.batches.remove(&id).map(|p| p.items).unwrap_or_default()
            };
            let (items, senders): (Vec<I>, Vec<oneshot::Sender<O>>) = batch.into_iter().unzip();
            let results = flush(items).await;
            for (tx, r) in senders.into_iter().zip(results) {
                let _ = tx.send(r);
            }
        }
        rx.await.map_err(|_| Abandoned)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn concurrent_items_for_one_key_share_one_flush_and_get_their_own_results() {
        let c: Coalescer<u32, u32> = Coalescer::new(20, Duration::from_millis(30));
        let flushes = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for i in 0..45u32 {
            let (c, flushes) = (c.clone(), flushes.clone());
            let key = if i < 40 { "g1" } else { "g2" };
            tasks.push(tokio::spawn(async move {
                c.submit(key, i, |items| async move {
                    flushes.fetch_add(1, Ordering::SeqCst);
                    assert!(items.len() <= 20);
                    items.into_iter().map(|x| x * 10).collect()
                })
                .await
                .unwrap()
            }));
        }
        for (i, t) in tasks.into_iter().enumerate() {
            assert_eq!(t.await.unwrap(), i as u32 * 10, "each gets its own result");
        }
        // 40 items of g1 fill two batches of 20; g2's five make one
        assert_eq!(flushes.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_lone_item_is_flushed_after_the_linger() {
        let c: Coalescer<u32, u32> = Coalescer::new(20, Duration::from_millis(5));
        let r = c.submit("k", 7, |items| async move { items }).await.unwrap();
        assert_eq!(r, 7);
        let single: Coalescer<u32, u32> = Coalescer::new(1, Duration::from_secs(60));
        assert_eq!(single.submit("k", 8, |items| async move { items }).await.unwrap(), 8, "max 1 does not linger");
    }
}
