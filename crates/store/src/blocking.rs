//! Running blocking work (disk writes, fsync, reads) from async code.
//!
//! On the multi-threaded runtime the server uses, the work goes to tokio's blocking
//! pool so request threads stay free. On a current-thread runtime (the deterministic
//! simulation, single-threaded tests) it runs inline instead: another thread would
//! finish at a moment the scheduler does not control, and the whole point of that
//! runtime is one thread deciding every interleaving.

use tokio::runtime::{Handle, RuntimeFlavor};

/// The blocking task could not finish (it panicked or the runtime is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("blocking task failed: {0}")]
pub struct BlockingError(String);

/// True when blocking work should run on the calling thread (see the module doc).
pub fn runs_inline() -> bool {
    Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::CurrentThread)
}

/// Run `f`, which blocks, without stalling other requests' threads.
pub async fn run_blocking<R, F>(f: F) -> Result<R, BlockingError>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    if runs_inline() {
        return Ok(f());
    }
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BlockingError(e.to_string()))
}
