//! A long-lived libnftables context, owned by one thread in the target
//! network namespace.
//!
//! Spawning `nft` for every batch costs a process start, the library's own
//! start-up and a fresh cache of the table on every call. A [`LibNft`] loads
//! `libnftables.so.1` once (with `dlopen`, so a host without it still works
//! through the `nft` binary), creates one `nft_ctx` on a dedicated thread that
//! first entered the namespace, and runs every command there: the context's
//! netlink socket and cache stay in that namespace for the dataplane's life.
//! The thread ends when the [`LibNft`] is dropped.
//!
//! libnftables keeps process-wide state besides its contexts (datatype and
//! protocol tables, the parsers' helpers), and two contexts used at once from
//! two threads corrupt each other: two dataplanes applying and listing side
//! by side (the plugin's netns tests) listed a three-field set key as two
//! fields about one run in five. Every call into the library therefore takes
//! one process-wide lock ([`LIBRARY_LOCK`]); contexts still live on their own
//! threads (each in its namespace), they just never run at the same time.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Mutex, MutexGuard};

/// The shared object the context is loaded from (Debian: package
/// `libnftables1`, a dependency of `nftables`).
pub const LIBRARY: &str = "libnftables.so.1";

/// Held around every call into libnftables, whichever context (see the
/// module docs).
static LIBRARY_LOCK: Mutex<()> = Mutex::new(());

/// The library lock (a panic while it was held poisons nothing the library
/// relies on: the guard protects no Rust data).
fn library_lock() -> MutexGuard<'static, ()> {
    LIBRARY_LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `NFT_CTX_OUTPUT_JSON`: JSON output, and JSON input is tried first.
const NFT_CTX_OUTPUT_JSON: c_uint = 1 << 4;

/// Why the library context could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LibNftError {
    #[error("cannot load {LIBRARY}: {0}")]
    Load(String),
    #[error("{LIBRARY}: cannot create a context")]
    Context,
    #[error("{LIBRARY}: cannot start its thread: {0}")]
    Thread(std::io::Error),
    #[error("{LIBRARY}: {0}")]
    Netns(palisade_netns::NetnsError),
    #[error("{LIBRARY}: the context's thread is gone")]
    Gone,
    #[error("{LIBRARY}: the command contains a NUL byte")]
    Nul,
}

/// What one command returned: the output on success, the error text
/// otherwise (nothing applied).
pub type Outcome = Result<String, String>;

struct Job {
    command: CString,
    reply: mpsc::Sender<Outcome>,
}

/// A libnftables context on its own thread (see the module docs).
pub struct LibNft {
    jobs: mpsc::Sender<Job>,
    netns: Option<PathBuf>,
}

impl std::fmt::Debug for LibNft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LibNft").field("netns", &self.netns).finish_non_exhaustive()
    }
}

impl LibNft {
    /// Loads the library and creates the context inside `netns` (`None`: the
    /// process's own namespace). Fails if the library or the namespace is
    /// missing; the caller falls back to the `nft` binary.
    pub fn start(netns: Option<&Path>) -> Result<LibNft, LibNftError> {
        let (jobs, inbox) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<Result<(), LibNftError>>();
        let ns = netns.map(Path::to_path_buf);
        let thread_ns = ns.clone();
        std::thread::Builder::new()
            .name("palisade-libnft".into())
            .spawn(move || {
                if let Some(path) = &thread_ns {
                    if let Err(e) = palisade_netns::enter(path) {
                        let _ = ready_tx.send(Err(LibNftError::Netns(e)));
                        return;
                    }
                }
                let ctx = match Context::new() {
                    Ok(ctx) => ctx,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                for job in inbox {
                    let _ = job.reply.send(ctx.run(&job.command));
                }
            })
            .map_err(LibNftError::Thread)?;
        ready_rx.recv().map_err(|_| LibNftError::Gone)??;
        Ok(LibNft { jobs, netns: ns })
    }

    /// Runs one command (nft syntax or a libnftables JSON document) and
    /// returns its (JSON) output.
    pub fn run(&self, command: &str) -> Result<Outcome, LibNftError> {
        let command = CString::new(command).map_err(|_| LibNftError::Nul)?;
        let (reply, answer) = mpsc::channel();
        self.jobs.send(Job { command, reply }).map_err(|_| LibNftError::Gone)?;
        answer.recv().map_err(|_| LibNftError::Gone)
    }
}

type CtxNew = unsafe extern "C" fn(c_uint) -> *mut c_void;
type CtxFree = unsafe extern "C" fn(*mut c_void);
type CtxInt = unsafe extern "C" fn(*mut c_void) -> c_int;
type CtxBuffer = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type CtxSetFlags = unsafe extern "C" fn(*mut c_void, c_uint);
type RunCmd = unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int;

/// The loaded library and one context; lives on (and never leaves) the
/// context's thread.
struct Context {
    ctx: *mut c_void,
    free: CtxFree,
    run_cmd: RunCmd,
    output: CtxBuffer,
    error: CtxBuffer,
    // Kept last: the functions above point into it.
    _library: libloading::Library,
}

// The FFI below is the crate's only unsafe code: calls into libnftables
// through the symbols of its public header (nftables/libnftables.h), on one
// thread, with a context created here and freed once in `Drop`.
#[allow(unsafe_code)]
impl Context {
    fn new() -> Result<Context, LibNftError> {
        let load = |e: libloading::Error| LibNftError::Load(e.to_string());
        // SAFETY: loading libnftables runs its (side-effect free) ELF
        // constructors only.
        let library = unsafe { libloading::Library::new(LIBRARY) }.map_err(load)?;
        // SAFETY: each symbol is looked up with the signature the library's
        // public header declares for it.
        let (new, free, buffer_output, buffer_error, output, error, set_flags, run_cmd) = unsafe {
            (
                *library.get::<CtxNew>(b"nft_ctx_new\0").map_err(load)?,
                *library.get::<CtxFree>(b"nft_ctx_free\0").map_err(load)?,
                *library.get::<CtxInt>(b"nft_ctx_buffer_output\0").map_err(load)?,
                *library.get::<CtxInt>(b"nft_ctx_buffer_error\0").map_err(load)?,
                *library.get::<CtxBuffer>(b"nft_ctx_get_output_buffer\0").map_err(load)?,
                *library.get::<CtxBuffer>(b"nft_ctx_get_error_buffer\0").map_err(load)?,
                *library.get::<CtxSetFlags>(b"nft_ctx_output_set_flags\0").map_err(load)?,
                *library.get::<RunCmd>(b"nft_run_cmd_from_buffer\0").map_err(load)?,
            )
        };
        let _lock = library_lock();
        // SAFETY: NFT_CTX_DEFAULT (0) is the documented flag value.
        let ctx = unsafe { new(0) };
        if ctx.is_null() {
            return Err(LibNftError::Context);
        }
        let context = Context { ctx, free, run_cmd, output, error, _library: library };
        // SAFETY: `ctx` is the live context created above.
        let buffered = unsafe {
            set_flags(ctx, NFT_CTX_OUTPUT_JSON);
            buffer_output(ctx) == 0 && buffer_error(ctx) == 0
        };
        if !buffered {
            return Err(LibNftError::Context);
        }
        Ok(context)
    }

    fn run(&self, command: &CStr) -> Outcome {
        // SAFETY: the context is live; `command` is NUL-terminated and
        // outlives the call; the buffers are read (and copied) before the
        // next call on this thread can reuse them.
        let _lock = library_lock();
        unsafe {
            let rc = (self.run_cmd)(self.ctx, command.as_ptr());
            let output = copy((self.output)(self.ctx));
            let error = copy((self.error)(self.ctx));
            if rc == 0 {
                Ok(output)
            } else {
                let error = error.trim().to_string();
                Err(if error.is_empty() { format!("libnftables returned {rc}") } else { error })
            }
        }
    }
}

/// Copies a C string owned by the library (NULL reads as empty).
#[allow(unsafe_code)]
fn copy(text: *const c_char) -> String {
    if text.is_null() {
        return String::new();
    }
    // SAFETY: the library returns a NUL-terminated buffer it owns, valid
    // until the next call on the context.
    unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
}

#[allow(unsafe_code)]
impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: freed once, on the thread that created it, before the
        // library is unloaded (fields drop after this body).
        let _lock = library_lock();
        unsafe { (self.free)(self.ctx) }
    }
}
