//! Polling an HTTP/2 connection in a loop that repeats itself instead of being woken.
//!
//! h2 wakes the task that polls a connection whenever a stream queues a frame or is released.
//! When that happens while the connection's owner is polling it anyway (a host's caller
//! flushing its own request, the plugin's connection task answering a call it just accepted),
//! the wake would only schedule one more poll of the task — on a multi-thread runtime, a hop to
//! a worker and back. A [`PollLoop`]'s waker absorbs such wakes while [`PollLoop::absorbing`]
//! runs and records them; the loop polls again itself, and only a wake it did not see reaches
//! the task.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Waker;

use futures_util::task::{ArcWake, AtomicWaker};

/// The waker every poll of one connection uses, and where its wakes go.
pub(crate) struct PollLoop {
    state: Arc<LoopState>,
    /// `state` as a [`Waker`], made once.
    waker: Waker,
}

struct LoopState {
    /// The task to wake when nobody is polling.
    task: AtomicWaker,
    /// [`PollLoop::absorbing`] is running: wakes are recorded in `missed`, not sent.
    polling: AtomicBool,
    missed: AtomicBool,
}

impl ArcWake for LoopState {
    fn wake_by_ref(this: &Arc<Self>) {
        if this.polling.load(Ordering::SeqCst) {
            this.missed.store(true, Ordering::SeqCst);
            // The loop may have ended before it saw `missed`: whoever takes the flag back
            // wakes the task.
            if this.polling.load(Ordering::SeqCst) || !this.missed.swap(false, Ordering::SeqCst) {
                return;
            }
        }
        this.task.wake();
    }
}

/// Wakes seen inside [`PollLoop::absorbing`].
pub(crate) struct Wakes<'a>(&'a LoopState);

impl Wakes<'_> {
    /// Whether anything woke the connection since the last call: it must be polled again.
    fn take(&self) -> bool {
        self.0.missed.swap(false, Ordering::SeqCst)
    }

    /// Runs `poll` (one poll of the connection; `Some` when it has ended) and again while
    /// something woke the connection during the previous run, `times` runs at most. A wake
    /// during the last is left to be sent on when the loop ends, so the task polls again.
    pub(crate) fn repeat<T>(&self, times: usize, mut poll: impl FnMut() -> Option<T>) -> Option<T> {
        for _ in 0..times {
            // What woke it before this run, this run sees.
            self.take();
            if let Some(ended) = poll() {
                return Some(ended);
            }
            if !self.take() {
                return None;
            }
        }
        self.0.missed.store(true, Ordering::SeqCst);
        None
    }
}

impl PollLoop {
    pub(crate) fn new() -> Self {
        let state = Arc::new(LoopState {
            task: AtomicWaker::new(),
            polling: AtomicBool::new(false),
            missed: AtomicBool::new(false),
        });
        let waker = futures_util::task::waker(Arc::clone(&state));
        PollLoop { state, waker }
    }

    /// The waker to poll the connection (and its streams) with.
    pub(crate) fn waker(&self) -> &Waker {
        &self.waker
    }

    /// Where wakes go when no loop is running: the task that polls the connection.
    pub(crate) fn register(&self, task: &Waker) {
        self.state.task.register(task);
    }

    /// Runs `body` with wakes absorbed; `body` polls with [`Wakes::repeat`]. A wake it left,
    /// or that came as it ended, wakes the task.
    pub(crate) fn absorbing<T>(&self, body: impl FnOnce(&Wakes<'_>) -> T) -> T {
        self.state.polling.store(true, Ordering::SeqCst);
        let result = body(&Wakes(&self.state));
        self.state.polling.store(false, Ordering::SeqCst);
        if self.state.missed.swap(false, Ordering::SeqCst) {
            self.state.task.wake();
        }
        result
    }
}

/// Test support: a waker that counts its wakes.
#[cfg(test)]
pub(crate) mod counting {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Waker;

    use futures_util::task::ArcWake;

    /// How many times its waker was woken.
    pub(crate) struct Count(AtomicUsize);

    impl Count {
        pub(crate) fn get(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    impl ArcWake for Count {
        fn wake_by_ref(this: &Arc<Self>) {
            this.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// A waker, and the count of its wakes.
    pub(crate) fn counted() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = futures_util::task::waker(Arc::clone(&count));
        (count, waker)
    }
}

#[cfg(test)]
mod tests {
    use super::counting::{Count, counted};
    use super::*;

    /// A loop whose task is a counted waker.
    fn registered() -> (Arc<Count>, PollLoop) {
        let (task, waker) = counted();
        let poll_loop = PollLoop::new();
        poll_loop.register(&waker);
        (task, poll_loop)
    }

    #[test]
    fn a_wake_inside_the_loop_is_taken_by_the_loop_and_not_sent() {
        let (task, poll_loop) = registered();
        let repeated = poll_loop.absorbing(|wakes| {
            poll_loop.waker().wake_by_ref();
            let first = wakes.take();
            (first, wakes.take())
        });
        assert_eq!(repeated, (true, false));
        assert_eq!(task.get(), 0);
    }

    #[test]
    fn a_wake_during_the_last_repeat_reaches_the_task() {
        let (task, poll_loop) = registered();
        let mut polls = 0;
        poll_loop.absorbing(|wakes| {
            // Every poll is woken again (a busy connection): the loop gives up after 3.
            wakes.repeat(3, || {
                polls += 1;
                poll_loop.waker().wake_by_ref();
                None::<()>
            })
        });
        assert_eq!(polls, 3);
        assert_eq!(task.get(), 1, "the last wake was lost");
    }

    #[test]
    fn a_quiet_poll_ends_the_repeats_and_an_ended_one_returns() {
        let (task, poll_loop) = registered();
        let mut polls = 0;
        let ended = poll_loop.absorbing(|wakes| {
            wakes.repeat(8, || {
                polls += 1;
                if polls == 1 {
                    poll_loop.waker().wake_by_ref();
                }
                None::<()>
            })
        });
        assert_eq!((ended, polls), (None, 2));
        let ended = poll_loop.absorbing(|wakes| wakes.repeat(8, || Some("ended")));
        assert_eq!(ended, Some("ended"));
        assert_eq!(task.get(), 0);
    }

    #[test]
    fn a_wake_the_loop_left_untaken_or_outside_it_reaches_the_task() {
        let (task, waker) = counted();
        let poll_loop = PollLoop::new();
        poll_loop.register(&waker);
        poll_loop.absorbing(|_| poll_loop.waker().wake_by_ref());
        assert_eq!(task.get(), 1);
        // Woken, the task polls again and registers again.
        poll_loop.register(&waker);
        poll_loop.waker().wake_by_ref();
        assert_eq!(task.get(), 2);
    }

    #[test]
    fn wakes_from_another_thread_while_looping_are_never_lost() {
        // Each round, a thread wakes while the loop runs or just after: the wake is either
        // taken inside or reaches the task, never neither.
        for _ in 0..2_000 {
            let (task, waker) = counted();
            let poll_loop = Arc::new(PollLoop::new());
            poll_loop.register(&waker);
            let remote = Arc::clone(&poll_loop);
            let waking = std::thread::spawn(move || remote.waker().wake_by_ref());
            let taken = poll_loop.absorbing(|wakes| {
                std::hint::spin_loop();
                wakes.take()
            });
            waking.join().unwrap();
            let sent = task.get();
            assert!(taken || sent == 1, "a wake was lost");
        }
    }
}
