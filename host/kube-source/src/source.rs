//! The Kubernetes source: the watchers' messages, reflected and debounced
//! into batches.

use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::Client;

use crate::health::Health;
use crate::kinds::WatchedKind;
use crate::reflection::{Batch, Reflection};
use crate::watchers::{self, Backoff, Message};

/// The watchers stopped (the runtime shut down).
#[derive(Debug, thiserror::Error)]
#[error("the Kubernetes watchers stopped")]
pub struct SourceClosed;

/// How the source watches and debounces.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    pub kinds: Vec<WatchedKind>,
    /// Quiet time after a change before the batch is applied.
    pub settle: Duration,
    /// The longest a change waits while changes keep coming.
    pub max_delay: Duration,
    pub backoff: Backoff,
}

impl Default for SourceConfig {
    fn default() -> SourceConfig {
        SourceConfig {
            kinds: crate::kinds::all(),
            settle: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            backoff: Backoff::default(),
        }
    }
}

pub struct KubeSource {
    rx: Receiver<Message>,
    reflection: Reflection,
    settle: Duration,
    max_delay: Duration,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for KubeSource {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl KubeSource {
    /// Starts watching every kind of `config` on `runtime`.
    pub fn start(
        runtime: &tokio::runtime::Handle,
        client: &Client,
        config: &SourceConfig,
        health: Arc<Health>,
    ) -> KubeSource {
        let (tx, rx) = channel();
        let tasks = watchers::spawn(runtime, client, &config.kinds, tx, health, config.backoff);
        KubeSource {
            rx,
            reflection: Reflection::new(config.kinds.clone()),
            settle: config.settle,
            max_delay: config.max_delay,
            tasks,
        }
    }

    pub fn reflection(&self) -> &Reflection {
        &self.reflection
    }

    fn handle(&mut self, message: Message) {
        match message {
            Message::Event { kind, event } => self.reflection.handle(kind, event),
            Message::Absent { kind } => self.reflection.absent(kind),
        }
    }

    /// Waits up to `timeout` for changes. The first batch comes once every
    /// kind is listed, and holds all of it. After a change, changes are
    /// collected until `settle` passes without one (at most `max_delay`),
    /// and returned as one batch. `None` if nothing is ready.
    pub fn next_batch(&mut self, timeout: Duration) -> Result<Option<Batch>, SourceClosed> {
        let deadline = Instant::now() + timeout;
        while !(self.reflection.synced() && self.reflection.has_pending()) {
            match self.rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(m) => self.handle(m),
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => return Err(SourceClosed),
            }
        }
        let started = Instant::now();
        loop {
            let left = self.settle.min(self.max_delay.saturating_sub(started.elapsed()));
            if left.is_zero() {
                break;
            }
            match self.rx.recv_timeout(left) {
                Ok(m) => self.handle(m),
                Err(_) => break,
            }
        }
        Ok(Some(self.reflection.take_batch()))
    }
}
