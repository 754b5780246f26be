//! Support for tests that drive kube-sim with the real `kubectl`.
//!
//! kubectl is found through `VTMOVE_KUBECTL`, else `kubectl` on PATH. The project's supported
//! kubectl (v1.37) comes from `shared/tools/install-helm-kubectl.sh`; CI (`.ci/run`) installs it
//! and exports the variable. A missing kubectl is a test failure with instructions, never a
//! skip: these tests are how the project knows kubectl works against its resources.

use std::path::{Path, PathBuf};

/// The kubectl binary to test with: `VTMOVE_KUBECTL`, else `kubectl` on PATH.
///
/// # Panics
///
/// When neither is there (or `VTMOVE_KUBECTL` names a missing file), with instructions to
/// install the supported kubectl.
pub fn kubectl_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("VTMOVE_KUBECTL") {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "VTMOVE_KUBECTL={} does not exist", p.display());
        return p;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("kubectl"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "kubectl not found: set VTMOVE_KUBECTL to a kubectl binary (install the supported one with \
             `bash shared/tools/install-helm-kubectl.sh DIR` and export VTMOVE_KUBECTL=DIR/kubectl), \
             or put kubectl on PATH"
        )
    })
}

/// What one kubectl run printed.
#[derive(Debug)]
pub struct Output {
    /// Whether kubectl exited with status 0.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

/// kubectl pointed at one kubeconfig, with its own HOME and discovery cache so runs never
/// see the user's configuration or another test's cache.
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    home: tempfile::TempDir,
}

impl Kubectl {
    /// kubectl (from [`kubectl_binary`]) for the server of `kubeconfig`.
    ///
    /// # Panics
    ///
    /// When no kubectl is found (see [`kubectl_binary`]) or no temporary directory can be
    /// made.
    pub fn new(kubeconfig: &Path) -> Kubectl {
        Kubectl::with_binary(kubectl_binary(), kubeconfig)
    }

    /// A given kubectl binary for the server of `kubeconfig`.
    ///
    /// # Panics
    ///
    /// When no temporary directory can be made.
    pub fn with_binary(bin: PathBuf, kubeconfig: &Path) -> Kubectl {
        Kubectl {
            bin,
            kubeconfig: kubeconfig.to_path_buf(),
            home: tempfile::tempdir().expect("a temporary HOME for kubectl"),
        }
    }

    /// Runs `kubectl --kubeconfig ... --cache-dir ... ARGS`.
    ///
    /// # Panics
    ///
    /// When the binary cannot be started.
    pub async fn run(&self, args: &[&str]) -> Output {
        let cache = self.home.path().join("cache");
        let out = tokio::process::Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .env("HOME", self.home.path())
            .env_remove("KUBECONFIG")
            .kill_on_drop(true)
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()));
        Output {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Runs kubectl and returns its standard output.
    ///
    /// # Panics
    ///
    /// When kubectl fails, showing both outputs.
    pub async fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(
            o.ok,
            "kubectl {args:?} failed:\nstdout: {}\nstderr: {}",
            o.stdout, o.stderr
        );
        o.stdout
    }

    /// Runs kubectl, which must fail, and returns its standard error.
    ///
    /// # Panics
    ///
    /// When kubectl succeeds.
    pub async fn fails(&self, args: &[&str]) -> String {
        let o = self.run(args).await;
        assert!(!o.ok, "kubectl {args:?} should fail:\nstdout: {}", o.stdout);
        o.stderr
    }
}
