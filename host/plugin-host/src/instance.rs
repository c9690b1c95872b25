//! One live instance of a plugin, and the classification of what went wrong
//! in a call.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;

use crate::bindings::v0_1::{self as wit, types, AnyBackend as Host, AnyBackendPre as HostPre};
use crate::error::{Call, PluginError};
use crate::limits::{LimitKind, Limits};
use crate::state::StoreState;

/// A plugin instance in its own store. After a trap or a broken limit it is
/// poisoned: every further call fails, and the owner makes a new one.
pub struct PluginInstance {
    store: Store<StoreState>,
    bindings: Host,
    plugin: Arc<str>,
    tick: Duration,
    poisoned: bool,
}

const HOSTCALL_FUEL_MESSAGE: &str = "fuel allocated for hostcalls has been exhausted";

impl PluginInstance {
    pub(crate) fn new(
        pre: &HostPre<StoreState>,
        state: StoreState,
        tick: Duration,
    ) -> Result<PluginInstance, PluginError> {
        let plugin = state.plugin.clone();
        let payload = state.limits.host_call_payload_bytes;
        let mut store = Store::new(pre.engine(), state);
        store.limiter(|s| s);
        store.set_hostcall_fuel(payload);
        // At each deadline, count only the plugin's own time: what the host
        // spent in capability calls is given back.
        store.epoch_deadline_callback(move |mut ctx| {
            let s = ctx.data_mut();
            let deadline = s.limits.call_deadline;
            let used = s.guest_time();
            if used >= deadline {
                s.limit_hit = Some(LimitKind::CpuDeadline { deadline });
                return Ok(wasmtime::UpdateDeadline::Interrupt);
            }
            Ok(wasmtime::UpdateDeadline::Continue(deadline_ticks(deadline - used, tick)))
        });
        // Instantiation runs the component's start code: give it a deadline.
        store.set_epoch_deadline(deadline_ticks(store.data().limits.call_deadline, tick));
        let bindings = match pre.instantiate(&mut store) {
            Ok(b) => b,
            Err(e) => {
                let limit = store.data_mut().limit_hit.take();
                return Err(classify(&plugin, Call::Instantiate, e, limit, &store.data().limits));
            }
        };
        Ok(PluginInstance { store, bindings, plugin, tick, poisoned: false })
    }

    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// True once a trap or a broken limit has made the instance unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    fn call<R>(
        &mut self,
        call: Call,
        f: impl FnOnce(&Host, &mut Store<StoreState>) -> wasmtime::Result<Result<R, types::Error>>,
    ) -> Result<R, PluginError> {
        if self.poisoned {
            return Err(PluginError::Trap {
                plugin: self.plugin.to_string(),
                call,
                message: "the instance trapped earlier and cannot be entered again".into(),
            });
        }
        let deadline = self.store.data().limits.call_deadline;
        self.store.data_mut().begin_call();
        self.store.set_epoch_deadline(deadline_ticks(deadline, self.tick));
        match f(&self.bindings, &mut self.store) {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(PluginError::Backend {
                plugin: self.plugin.to_string(),
                call,
                code: wit::error_code(e.code).to_string(),
                message: e.message,
            }),
            Err(e) => {
                self.poisoned = true;
                let limit = self.store.data_mut().limit_hit.take();
                Err(classify(&self.plugin, call, e, limit, &self.store.data().limits))
            }
        }
    }

    pub fn info(&mut self) -> Result<types::PluginInfo, PluginError> {
        self.call(Call::Info, |b, s| b.palisade_backend_backend().call_info(s).map(Ok))
    }

    pub fn configure(&mut self, settings: &[(String, String)]) -> Result<(), PluginError> {
        self.call(Call::Configure, |b, s| b.palisade_backend_backend().call_configure(s, settings))
    }

    /// Applies a full rule set already converted to WIT values.
    pub fn apply_wit(&mut self, rules: &types::RuleSet) -> Result<(), PluginError> {
        self.call(Call::Apply, |b, s| b.palisade_backend_backend().call_apply(s, rules))
    }

    pub fn apply(&mut self, rules: &palisade_model::RuleSet) -> Result<(), PluginError> {
        self.store.data().caps.bpf.endpoints(&self.plugin, &rules.endpoints, &[], true);
        let rules = wit::rule_set(rules);
        self.apply_wit(&rules)?;
        self.store.data().caps.bpf.applied(&self.plugin);
        Ok(())
    }

    pub fn update(&mut self, delta: &palisade_model::Delta) -> Result<(), PluginError> {
        self.store.data().caps.bpf.endpoints(
            &self.plugin,
            &delta.endpoints_upserted,
            &delta.endpoints_removed,
            false,
        );
        let delta = wit::delta(delta);
        self.call(Call::Update, |b, s| b.palisade_backend_backend().call_update(s, &delta))
    }

    pub fn reset(&mut self) -> Result<(), PluginError> {
        let result = self.call(Call::Reset, |b, s| b.palisade_backend_backend().call_reset(s));
        self.store.data().caps.bpf.release(&self.plugin);
        result
    }

    pub fn evaluate(
        &mut self,
        src: IpAddr,
        dst: IpAddr,
        protocol: palisade_model::Protocol,
        port: u16,
    ) -> Result<types::Verdict, PluginError> {
        let flow = wit::flow(src, dst, protocol, port);
        self.call(Call::Evaluate, |b, s| b.palisade_backend_backend().call_evaluate(s, flow))
    }
}

fn deadline_ticks(deadline: Duration, tick: Duration) -> u64 {
    let ticks = deadline.as_nanos() / tick.as_nanos().max(1);
    u64::try_from(ticks).unwrap_or(u64::MAX / 2).clamp(1, u64::MAX / 2) + 1
}

/// Names what went wrong: a limit the host recorded, an epoch interrupt (the
/// CPU deadline), exhausted host-call fuel (an oversized payload), or a
/// plain trap.
fn classify(
    plugin: &str,
    call: Call,
    err: wasmtime::Error,
    limit: Option<LimitKind>,
    limits: &Limits,
) -> PluginError {
    let plugin = plugin.to_string();
    if let Some(limit) = limit {
        return PluginError::Limit { plugin, call, limit };
    }
    if let Some(wasmtime::Trap::Interrupt) = err.downcast_ref::<wasmtime::Trap>() {
        return PluginError::Limit {
            plugin,
            call,
            limit: LimitKind::CpuDeadline { deadline: limits.call_deadline },
        };
    }
    let message = format!("{err:#}");
    if message.contains(HOSTCALL_FUEL_MESSAGE) {
        return PluginError::Limit {
            plugin,
            call,
            limit: LimitKind::HostCallPayload { limit: limits.host_call_payload_bytes },
        };
    }
    PluginError::Trap { plugin, call, message }
}
