//! Per-plugin resource limits and the store's resource limiter.

use std::fmt;
use std::time::Duration;

/// Limits applied to every plugin instance and call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Linear memory of one instance, in bytes.
    pub memory_bytes: usize,
    /// Table elements of one instance.
    pub table_elements: usize,
    /// CPU deadline of one call: the plugin's own running time, enforced by
    /// epoch interruption (accurate to the engine's tick); time the host
    /// spends serving its capability calls does not count.
    pub call_deadline: Duration,
    /// Bytes a plugin may pass in one host call (strings, lists).
    pub host_call_payload_bytes: usize,
    /// Host calls a plugin may make during one call of its own.
    pub host_calls_per_call: u64,
    /// Bytes a plugin may pass over all host calls during one call.
    pub host_call_bytes_per_call: u64,
    /// Length of one log message.
    pub log_message_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 256 << 20,
            table_elements: 100_000,
            call_deadline: Duration::from_secs(5),
            host_call_payload_bytes: 64 << 20,
            host_calls_per_call: 100_000,
            host_call_bytes_per_call: 256 << 20,
            log_message_bytes: 64 << 10,
        }
    }
}

/// Which limit a plugin broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitKind {
    /// It tried to grow its memory beyond `memory_bytes`.
    Memory { limit: usize, desired: usize },
    /// Its table beyond `table_elements`.
    Table { limit: usize },
    /// It ran past the call deadline.
    CpuDeadline { deadline: Duration },
    /// One host call carried more than `host_call_payload_bytes`.
    HostCallPayload { limit: usize },
    /// It made more than `host_calls_per_call` host calls.
    HostCalls { limit: u64 },
    /// Its host calls carried more than `host_call_bytes_per_call` in all.
    HostCallBytes { limit: u64 },
    /// One log message exceeded `log_message_bytes`.
    LogMessage { limit: usize, length: usize },
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LimitKind::Memory { limit, desired } => {
                write!(f, "memory ({limit} bytes; it asked for {desired})")
            }
            LimitKind::Table { limit } => write!(f, "table ({limit} elements)"),
            LimitKind::CpuDeadline { deadline } => {
                write!(f, "CPU deadline ({deadline:?} per call)")
            }
            LimitKind::HostCallPayload { limit } => {
                write!(f, "host-call payload ({limit} bytes per host call)")
            }
            LimitKind::HostCalls { limit } => {
                write!(f, "host-call budget ({limit} calls per call)")
            }
            LimitKind::HostCallBytes { limit } => {
                write!(f, "host-call budget ({limit} bytes per call)")
            }
            LimitKind::LogMessage { limit, length } => {
                write!(f, "log message size ({limit} bytes; it sent {length})")
            }
        }
    }
}
