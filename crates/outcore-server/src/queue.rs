//! The server-wide wait queue: a request holds a ticket from when it is accepted until its job
//! takes a decoding slot (including any wait for the model to load). `max_queue` tickets at most.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::metrics::ModelStats;

#[derive(Debug)]
pub struct Queue {
    waiting: AtomicUsize,
    max: usize,
}

impl Queue {
    pub fn new(max: usize) -> Arc<Queue> {
        Arc::new(Queue {
            waiting: AtomicUsize::new(0),
            max,
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// A ticket, or `None` when `max` requests are already waiting.
    pub fn ticket(self: &Arc<Self>, model: Arc<ModelStats>) -> Option<QueueTicket> {
        self.waiting
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        model.queued.fetch_add(1, Ordering::SeqCst);
        Some(QueueTicket {
            queue: self.clone(),
            model,
        })
    }
}

/// Released on drop.
#[derive(Debug)]
pub struct QueueTicket {
    queue: Arc<Queue>,
    model: Arc<ModelStats>,
}

impl Drop for QueueTicket {
    fn drop(&mut self) {
        self.queue.waiting.fetch_sub(1, Ordering::SeqCst);
        self.model.queued.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded() {
        let q = Queue::new(2);
        let m = Arc::new(ModelStats::default());
        let a = q.ticket(m.clone()).unwrap();
        let b = q.ticket(m.clone()).unwrap();
        assert!(q.ticket(m.clone()).is_none());
        assert_eq!(m.queued.load(Ordering::SeqCst), 2);
        drop(a);
        let c = q.ticket(m.clone()).unwrap();
        drop((b, c));
        assert_eq!(q.waiting(), 0);
        assert_eq!(m.queued.load(Ordering::SeqCst), 0);
    }
}
