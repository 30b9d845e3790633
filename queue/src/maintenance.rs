//! The per-process maintenance loop: one timer renews every lease this process holds,
//! another reaps expired leases of the queues it serves, a third applies retention. Any
//! number of processes may run it at once: every step is one idempotent script.

use std::collections::HashMap;
use std::sync::Weak;
use std::time::{Duration, Instant};

use crate::QueueError;
use crate::queue::{Inner, Queue, ms};
use crate::scripts::SCRIPTS;

impl Queue {
    /// Marks a queue as consumed by this process and starts the maintenance loop once.
    pub(crate) async fn serve(&self, queue: &str) -> Result<(), QueueError> {
        let fresh = self.inner.served.lock().map(|mut s| s.insert(queue.to_owned())).unwrap_or(false);
        if fresh {
            self.register(queue).await?;
            self.start_maintenance();
        }
        Ok(())
    }

    /// Also reap and trim `queue` from this process, without consuming it (for example in
    /// a scheduler process that watches every queue).
    pub async fn watch(&self, queue: &str) -> Result<(), QueueError> {
        self.serve(queue).await
    }

    pub(crate) fn hold_lease(&self, queue: &str, member: &str) {
        if let Ok(mut l) = self.inner.leases.lock() {
            l.entry(queue.to_owned()).or_default().insert(member.to_owned());
        }
    }

    pub(crate) fn forget_lease(&self, queue: &str, member: &str) {
        if let Ok(mut l) = self.inner.leases.lock()
            && let Some(set) = l.get_mut(queue)
        {
            set.remove(member);
        }
    }

    /// Leases this process holds right now.
    pub fn leases_held(&self) -> usize {
        self.inner.leases.lock().map(|l| l.values().map(|s| s.len()).sum()).unwrap_or(0)
    }

    fn start_maintenance(&self) {
        let Ok(mut slot) = self.inner.maintenance.lock() else { return };
        if slot.is_some() {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            tracing::error!("no tokio runtime: leases of this process will not be renewed");
            return;
        };
        *slot = Some(handle.spawn(run(self.downgrade())));
    }

    /// Renews every lease this process holds. Returns how many were renewed.
    pub(crate) async fn renew_leases(&self) -> Result<u64, QueueError> {
        let snapshot: HashMap<String, Vec<String>> = match self.inner.leases.lock() {
            Ok(l) => {
                l.iter().filter(|(_, s)| !s.is_empty()).map(|(q, s)| (q.clone(), s.iter().cloned().collect())).collect()
            }
            Err(_) => return Ok(0),
        };
        let lease_ms = ms(self.config().lease).to_string();
        let mut renewed = 0;
        for (queue, members) in snapshot {
            let keys = self.keys(&queue);
            for chunk in members.chunks(1000) {
                let mut args = Vec::with_capacity(chunk.len() + 1);
                args.push(lease_ms.clone());
                args.extend(chunk.iter().cloned());
                let v = self.invoke(&SCRIPTS.renew, std::slice::from_ref(&keys.inflight), &args).await?;
                renewed += crate::queue::ints(&v).first().copied().unwrap_or(0);
            }
        }
        Ok(renewed)
    }
}

async fn run(weak: Weak<Inner>) {
    let (renew_every, reap_every, janitor_every) = match weak.upgrade() {
        Some(inner) => (inner.cfg.renew_every, inner.cfg.reap_every, inner.cfg.janitor_every),
        None => return,
    };
    let tick = renew_every.min(reap_every).min(Duration::from_millis(250)).max(Duration::from_millis(10));
    let mut next_renew = Instant::now() + renew_every;
    // spread the first reap and retention pass so processes started together do not align
    let mut next_reap = Instant::now() + jitter(reap_every);
    let mut next_janitor = Instant::now() + jitter(janitor_every);
    loop {
        tokio::time::sleep(tick).await;
        let Some(inner) = weak.upgrade() else { return };
        let queue = Queue { inner };
        let now = Instant::now();
        if now >= next_renew {
            next_renew = now + renew_every;
            if let Err(e) = queue.renew_leases().await {
                tracing::warn!(error = %e, "lease renewal failed; will retry");
                next_renew = now + tick;
            }
        }
        let served: Vec<String> = queue.inner.served.lock().map(|s| s.iter().cloned().collect()).unwrap_or_default();
        if now >= next_reap {
            next_reap = now + reap_every;
            for q in &served {
                if let Err(e) = queue.reap(q).await {
                    tracing::debug!(queue = %q, error = %e, "reaper pass failed");
                }
            }
        }
        if now >= next_janitor {
            next_janitor = now + janitor_every;
            for q in &served {
                if let Err(e) = queue.apply_retention(q).await {
                    tracing::debug!(queue = %q, error = %e, "retention pass failed");
                }
            }
        }
    }
}

fn jitter(d: Duration) -> Duration {
    let max = u64::try_from(d.as_millis()).unwrap_or(1000).max(1);
    Duration::from_millis(fastrand::u64(0..max))
}
