//! A one-shot answer: one value sent once from one thread to one waiting thread, which
//! sleeps on a condition variable until it comes (or the sender is dropped).
//!
//! Each HTTP increment waits for its group commit on its connection's thread. A
//! crossbeam channel's blocking receive spins and yields the processor a few times
//! before it sleeps; with a thread per connection waiting out an fsync, those yields cost
//! context switches and processor time on a busy machine. This waits without them.

use std::sync::{Arc, Condvar, Mutex};

/// Makes a sender and the receiver that waits for what it sends.
pub fn channel<T>() -> (Sender<T>, Receiver<T>) {
    let slot = Arc::new(Slot {
        state: Mutex::new(State::Waiting),
        ready: Condvar::new(),
    });
    (Sender(slot.clone()), Receiver(slot))
}

enum State<T> {
    Waiting,
    Sent(T),
    /// The sender was dropped without sending, or the value was taken.
    Closed,
}

struct Slot<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

impl<T> Slot<T> {
    fn settle(&self, to: State<T>) {
        let mut state = self.state.lock().expect("oneshot lock");
        if matches!(*state, State::Waiting) {
            *state = to;
            self.ready.notify_one();
        }
    }
}

/// Sends the one value; dropping it unsent wakes the receiver with nothing.
pub struct Sender<T>(Arc<Slot<T>>);

impl<T> Sender<T> {
    pub fn send(self, value: T) {
        self.0.settle(State::Sent(value));
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.settle(State::Closed);
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("oneshot::Sender")
    }
}

pub struct Receiver<T>(Arc<Slot<T>>);

impl<T> Receiver<T> {
    /// Waits for the value; `None` if the sender was dropped without sending.
    pub fn recv(self) -> Option<T> {
        let mut state = self.0.state.lock().expect("oneshot lock");
        while matches!(*state, State::Waiting) {
            state = self.0.ready.wait(state).expect("oneshot lock");
        }
        match std::mem::replace(&mut *state, State::Closed) {
            State::Sent(value) => Some(value),
            State::Waiting | State::Closed => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_arrives_across_threads_and_a_dropped_sender_wakes_with_none() {
        let (tx, rx) = channel();
        std::thread::spawn(move || tx.send(7));
        assert_eq!(rx.recv(), Some(7));
        let (tx, rx) = channel::<u8>();
        std::thread::spawn(move || drop(tx));
        assert_eq!(rx.recv(), None);
    }
}
