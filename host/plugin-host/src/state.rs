//! The data of one plugin's store: its (empty) WASI context, its limits and
//! budgets, and the capability providers its calls reach.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use crate::capability::Capabilities;
use crate::limits::{LimitKind, Limits};

pub(crate) struct StoreState {
    pub plugin: Arc<str>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub limits: Limits,
    /// The limit broken during the current call, if any: set right before
    /// the trap so that the caller can name it.
    pub limit_hit: Option<LimitKind>,
    calls: u64,
    bytes: u64,
    /// When the current plugin call started, and how much of it the host
    /// spent serving capability calls: the CPU deadline counts only the
    /// plugin's own time.
    call_started: Instant,
    host_time: Duration,
    pub caps: Capabilities,
}

impl StoreState {
    pub fn new(plugin: Arc<str>, limits: Limits, caps: Capabilities) -> StoreState {
        // No preopened directories, no environment, no arguments, no network,
        // no stdio: a plugin that touches WASI finds nothing behind it.
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .socket_addr_check(|_, _| Box::pin(async { false }))
            .build();
        StoreState {
            plugin,
            wasi,
            table: ResourceTable::new(),
            limits,
            limit_hit: None,
            calls: 0,
            bytes: 0,
            call_started: Instant::now(),
            host_time: Duration::ZERO,
            caps,
        }
    }

    /// Starts the budget of a new plugin call.
    pub fn begin_call(&mut self) {
        self.calls = 0;
        self.bytes = 0;
        self.limit_hit = None;
        self.call_started = Instant::now();
        self.host_time = Duration::ZERO;
    }

    /// Time the plugin itself has run during the current call.
    pub fn guest_time(&self) -> Duration {
        self.call_started.elapsed().saturating_sub(self.host_time)
    }

    /// Runs a capability provider call, keeping its time off the plugin's
    /// CPU deadline (an nft transaction of a large rule set takes seconds of
    /// the host's time, none of the plugin's).
    pub fn serve<R>(&mut self, work: impl FnOnce(&Capabilities, &str) -> R) -> R {
        let started = Instant::now();
        let result = work(&self.caps, &self.plugin);
        self.host_time += started.elapsed();
        result
    }

    /// Records a broken limit and returns the error that traps the guest.
    pub fn broke(&mut self, kind: LimitKind) -> wasmtime::Error {
        self.limit_hit = Some(kind);
        wasmtime::Error::msg(format!("plugin broke the {kind} limit"))
    }

    /// Charges one host call carrying `bytes` against the call's budget.
    pub fn charge(&mut self, bytes: usize) -> wasmtime::Result<()> {
        self.calls += 1;
        self.bytes = self.bytes.saturating_add(bytes as u64);
        if self.calls > self.limits.host_calls_per_call {
            return Err(self.broke(LimitKind::HostCalls { limit: self.limits.host_calls_per_call }));
        }
        if self.bytes > self.limits.host_call_bytes_per_call {
            return Err(self
                .broke(LimitKind::HostCallBytes { limit: self.limits.host_call_bytes_per_call }));
        }
        Ok(())
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl wasmtime::ResourceLimiter for StoreState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.memory_bytes {
            return Err(self.broke(LimitKind::Memory { limit: self.limits.memory_bytes, desired }));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limits.table_elements {
            return Err(self.broke(LimitKind::Table { limit: self.limits.table_elements }));
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }

    fn tables(&self) -> usize {
        64
    }
}
