//! `vtmove-sandbox --etcd` leaves nothing behind when it is stopped: SIGTERM (what `timeout`, CI
//! runners and container runtimes send) stops etcd and removes its data directory like Ctrl-C,
//! and even SIGKILL, which runs no cleanup, takes etcd down with it.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The sandbox in interactive mode, once it says it is up; with the pid and data directory of
/// its etcd child.
struct Running {
    sandbox: Child,
    etcd_pid: u32,
    etcd_data_dir: PathBuf,
    _kubeconfig_dir: tempfile::TempDir,
}

fn start_sandbox() -> Running {
    let kubeconfig_dir = tempfile::tempdir().expect("a temp dir");
    let mut sandbox = Command::new(env!("CARGO_BIN_EXE_vtmove-sandbox"))
        .args([
            "--etcd",
            "--interactive",
            "--write-rate",
            "5",
            "--kubeconfig",
        ])
        .arg(kubeconfig_dir.path().join("kubeconfig"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn vtmove-sandbox");
    let stdout = sandbox.stdout.take().expect("piped stdout");
    let (lines, ready) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = ready
            .recv_timeout(left)
            .expect("the sandbox says it is interactive within 120 s");
        if line.contains("interactive:") {
            break;
        }
    }
    let (etcd_pid, etcd_data_dir) = etcd_child_of(sandbox.id()).expect("the sandbox runs etcd");
    Running {
        sandbox,
        etcd_pid,
        etcd_data_dir,
        _kubeconfig_dir: kubeconfig_dir,
    }
}

/// The etcd process whose parent is `parent`, with its `--data-dir`.
fn etcd_child_of(parent: u32) -> Option<(u32, PathBuf)> {
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // `pid (comm) state ppid ...`: comm may hold spaces, so split after the last ')'.
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let ppid = rest
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse::<u32>().ok());
        if ppid != Some(parent) || !head.ends_with("(etcd") {
            continue;
        }
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let data_dir = cmdline
            .split(|b| *b == 0)
            .filter_map(|arg| std::str::from_utf8(arg).ok())
            .find_map(|arg| arg.strip_prefix("--data-dir="))
            .map(PathBuf::from)?;
        return Some((pid, data_dir));
    }
    None
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        // A zombie (state Z) is dead, only not yet reaped.
        .is_ok_and(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_some_and(|state| state != "Z")
        })
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// Waits (up to `within`) for `pid` to die.
fn wait_dead(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !alive(pid)
}

#[test]
fn sigterm_stops_etcd_and_removes_its_data() {
    let mut running = start_sandbox();
    assert!(running.etcd_data_dir.exists());
    signal(running.sandbox.id(), "TERM");
    let status = running.sandbox.wait().expect("wait for the sandbox");
    assert!(
        status.success(),
        "the sandbox exits cleanly on SIGTERM: {status}"
    );
    assert!(
        wait_dead(running.etcd_pid, Duration::from_secs(10)),
        "etcd {} still runs after the sandbox stopped on SIGTERM",
        running.etcd_pid
    );
    assert!(
        !running.etcd_data_dir.exists(),
        "etcd's data directory {} is left behind",
        running.etcd_data_dir.display()
    );
}

#[test]
fn sigkill_takes_etcd_down_with_the_sandbox() {
    let mut running = start_sandbox();
    signal(running.sandbox.id(), "KILL");
    let _ = running.sandbox.wait();
    let dead = wait_dead(running.etcd_pid, Duration::from_secs(10));
    if !dead {
        signal(running.etcd_pid, "KILL");
    }
    // SIGKILL runs no cleanup: the data directory stays; remove it here.
    if let Some(dir) = running.etcd_data_dir.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
    assert!(
        dead,
        "etcd {} outlived its SIGKILLed parent",
        running.etcd_pid
    );
}
