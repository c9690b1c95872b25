//! Holding a lab until the operator stops it: Ctrl-C (SIGINT) or SIGTERM.
//!
//! Call [`TerminationSignals::block`] before building the lab, on the main
//! thread: the signals are then blocked in every thread started afterwards
//! (listener threads included), so none of them dies of the default action
//! and the teardown always runs.

use std::sync::mpsc;
use std::time::Duration;

use nix::sys::signal::{SigSet, Signal};

/// SIGINT and SIGTERM, blocked on this thread and inherited by new threads.
#[derive(Debug)]
pub struct TerminationSignals {
    set: SigSet,
}

/// Why [`TerminationSignals::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldEnd {
    /// SIGINT or SIGTERM arrived (its name).
    Signal(&'static str),
    /// The time limit passed.
    TimeLimit,
}

impl TerminationSignals {
    /// Blocks SIGINT and SIGTERM on the calling thread, and gives them
    /// their default disposition (a shell starts background jobs with
    /// SIGINT ignored, and an ignored signal never reaches `sigwait`;
    /// blocked, the default action never runs).
    pub fn block() -> Result<TerminationSignals, nix::Error> {
        let mut set = SigSet::empty();
        set.add(Signal::SIGINT);
        set.add(Signal::SIGTERM);
        set.thread_block()?;
        for sig in [Signal::SIGINT, Signal::SIGTERM] {
            default_disposition(sig)?;
        }
        Ok(TerminationSignals { set })
    }

    /// Waits for SIGINT/SIGTERM, or for `limit` if given.
    pub fn wait(&self, limit: Option<Duration>) -> HoldEnd {
        let (tx, rx) = mpsc::channel();
        let set = self.set;
        // The waiting thread inherits the blocked mask and takes the signal
        // with sigwait; it is left behind if the time limit passes first.
        let spawned =
            std::thread::Builder::new().name("palisade-lab-signals".into()).spawn(move || {
                if let Ok(sig) = set.wait() {
                    let _ = tx.send(sig);
                }
            });
        if spawned.is_err() {
            if let Some(limit) = limit {
                std::thread::sleep(limit);
            }
            return HoldEnd::TimeLimit;
        }
        let got = match limit {
            Some(limit) => rx.recv_timeout(limit).ok(),
            None => rx.recv().ok(),
        };
        match got {
            Some(sig) => HoldEnd::Signal(sig.as_str()),
            None => HoldEnd::TimeLimit,
        }
    }
}

#[allow(unsafe_code)]
fn default_disposition(sig: Signal) -> Result<(), nix::Error> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler};
    let action = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: installs no handler function, only the default disposition,
    // so no code runs in signal context; the signal is blocked on this
    // thread (and threads started from it) before this call.
    unsafe { sigaction(sig, &action) }.map(drop)
}
