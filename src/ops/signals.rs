//! The signals that stop vtmove's long-running commands: SIGTERM (what Kubernetes, container
//! runtimes, CI runners and `timeout` send) and Ctrl-C (SIGINT), handled alike so every child
//! process and temporary directory is cleaned up on either.

/// Resolves on the first SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
