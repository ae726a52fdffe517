//! Admission to a model: counts its requests in flight (for the load factor) and, with `max_concurrent`, holds
//! the rest in a first-come queue of at most `max_waiting`, as a real inference server's scheduler does.
//! Waiting parks only the coroutine (may's semaphore), never a worker thread.

use std::sync::atomic::{AtomicUsize, Ordering};

use may::sync::Semphore;

/// One model's gate.
pub struct Gate {
    /// Most requests generating at once; 0 admits everyone at once.
    max_concurrent: usize,
    /// Most requests waiting for a slot; past it a request is refused.
    max_waiting: usize,
    /// Free slots (only used with a `max_concurrent`).
    slots: Semphore,
    in_flight: AtomicUsize,
    waiting: AtomicUsize,
}

/// A request admitted to generate; frees its slot when dropped, also on a panic or a client leaving.
pub struct Permit<'a> {
    gate: &'a Gate,
    /// Requests in flight on the model when this one was admitted, itself included.
    pub in_flight: usize,
}

/// The queue is full: the request is refused.
#[derive(Debug, PartialEq, Eq)]
pub struct QueueFull {
    /// Requests waiting when it was refused.
    pub waiting: usize,
}

impl Gate {
    /// A gate for `max_concurrent` requests at once (0: no limit) and `max_waiting` more in the queue.
    pub fn new(max_concurrent: usize, max_waiting: usize) -> Self {
        Gate {
            max_concurrent,
            max_waiting,
            slots: Semphore::new(max_concurrent),
            in_flight: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
        }
    }

    /// Waits for a slot, or refuses at once when the queue is full.
    pub fn enter(&self) -> Result<Permit<'_>, QueueFull> {
        if self.max_concurrent > 0 && !self.slots.try_wait() {
            // Reserve a queue place first, so the bound holds under any interleaving.
            let before = self.waiting.fetch_add(1, Ordering::AcqRel);
            if before >= self.max_waiting {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                return Err(QueueFull { waiting: before });
            }
            self.slots.wait();
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
        let in_flight = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
        Ok(Permit {
            gate: self,
            in_flight,
        })
    }

    /// Requests generating now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Requests waiting for a slot now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.gate.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.gate.max_concurrent > 0 {
            self.gate.slots.post();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn without_a_limit_everyone_enters_and_is_counted() {
        let gate = Gate::new(0, 0);
        let a = gate.enter().unwrap();
        let b = gate.enter().unwrap();
        assert_eq!((a.in_flight, b.in_flight, gate.in_flight()), (1, 2, 2));
        drop(a);
        drop(b);
        assert_eq!(gate.in_flight(), 0);
    }

    #[test]
    fn a_full_queue_refuses_and_a_freed_slot_admits_the_waiter() {
        let gate = Arc::new(Gate::new(1, 1));
        let first = gate.enter().unwrap();
        let waiter = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.enter().map(|p| p.in_flight))
        };
        while gate.waiting() == 0 {
            std::thread::sleep(Duration::from_millis(1));
        }
        // One running, one waiting: the next is refused.
        assert_eq!(gate.enter().err(), Some(QueueFull { waiting: 1 }));
        drop(first);
        assert_eq!(waiter.join().unwrap(), Ok(1));
        assert_eq!((gate.in_flight(), gate.waiting()), (0, 0));
    }
}
