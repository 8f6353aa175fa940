//! Child processes, and what Ctrl-C (or SIGTERM) does to them.
//!
//! The first signal only raises a flag and interrupts the command that is running, so the main
//! thread unwinds through its normal teardown and stops every server it started, in order. A
//! second signal stops the registered servers from the signal thread and exits at once, for
//! when the orderly path is stuck.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

/// The exit code of a program stopped by SIGINT, which is what a shell reports for Ctrl-C.
pub const INTERRUPTED_EXIT_CODE: u8 = 130;

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The process group of the foreground command, so a signal can stop it and its children
/// (cargo runs rustc and test binaries under itself).
static FOREGROUND: Mutex<Option<Pid>> = Mutex::new(None);

/// What to clean up when a second signal arrives: server processes and their directories.
static CLEANUP: Mutex<Vec<Registered>> = Mutex::new(Vec::new());
static NEXT_ID: Mutex<u64> = Mutex::new(0);

struct Registered {
    id: u64,
    what: Cleanup,
}

enum Cleanup {
    Process { pid: Pid, signal: Signal },
    Dir(PathBuf),
}

/// Routes SIGINT, SIGTERM and SIGHUP to the handler described in the module docs.
pub fn install_signal_handler() -> Result<()> {
    ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            say!("xtask: interrupted again: stopping servers now and exiting");
            emergency_stop();
            std::process::exit(i32::from(INTERRUPTED_EXIT_CODE));
        }
        say!("xtask: interrupted: stopping (press Ctrl-C again to force)");
        if let Some(group) = *lock(&FOREGROUND) {
            let _ = killpg(group, Signal::SIGINT);
        }
    })
    .context("installing the Ctrl-C handler")
}

/// Whether Ctrl-C or a termination signal arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// Fails once a signal has arrived, so waiting loops give up promptly.
pub fn check_interrupted() -> Result<()> {
    if interrupted() {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleeps in short slices, failing as soon as a signal arrives.
pub fn sleep(duration: Duration) -> Result<()> {
    let deadline = Instant::now() + duration;
    loop {
        check_interrupted()?;
        let now = Instant::now();
        if now >= deadline {
            return Ok(());
        }
        thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

/// Runs a command with inherited stdio in its own process group and waits for it; a signal to
/// xtask is passed on to the whole group.
pub fn run_foreground(command: &mut Command) -> Result<ExitStatus> {
    in_foreground(command, |mut child| child.wait())
}

/// Runs a short command to completion and captures its output; a signal to xtask is passed on
/// to it as for [`run_foreground`].
pub fn output(command: &mut Command) -> Result<Output> {
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    in_foreground(command, Child::wait_with_output)
}

fn in_foreground<T>(
    command: &mut Command,
    wait: impl FnOnce(Child) -> std::io::Result<T>,
) -> Result<T> {
    use std::os::unix::process::CommandExt;

    check_interrupted()?;
    let child = command
        .process_group(0)
        .stdin(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", describe(command)))?;
    let group = Pid::from_raw(pid_of(&child));
    *lock(&FOREGROUND) = Some(group);
    // A signal that landed between the check above and publishing the group would be lost.
    if interrupted() {
        let _ = killpg(group, Signal::SIGINT);
    }
    let result = wait(child);
    *lock(&FOREGROUND) = None;
    result.with_context(|| format!("waiting for {}", describe(command)))
}

/// Runs a short command and fails with its output unless it exits successfully.
pub fn run_checked(command: &mut Command) -> Result<Output> {
    let output = output(command)?;
    if !output.status.success() {
        bail!(
            "{} failed ({}):\n{}{}",
            describe(command),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// A command as a person would type it, for messages.
pub fn describe(command: &Command) -> String {
    let mut text = command.get_program().to_string_lossy().into_owned();
    for arg in command.get_args() {
        let arg = arg.to_string_lossy();
        if arg.is_empty() || arg.contains(' ') {
            text.push_str(&format!(" {arg:?}"));
        } else {
            text.push(' ');
            text.push_str(&arg);
        }
    }
    text
}

/// The pid of a child as the signal API wants it.
pub fn pid_of(child: &Child) -> i32 {
    // Linux pids fit in i32 (pid_max is at most 2^22).
    i32::try_from(child.id()).unwrap_or(i32::MAX)
}

/// Remembers a server process so a second Ctrl-C can stop it with `signal`; returns the id to
/// [`unregister`] it with.
pub fn register_process(pid: i32, signal: Signal) -> u64 {
    register(Cleanup::Process {
        pid: Pid::from_raw(pid),
        signal,
    })
}

/// Remembers a server directory so a second Ctrl-C removes it.
pub fn register_dir(dir: &Path) -> u64 {
    register(Cleanup::Dir(dir.to_path_buf()))
}

fn register(what: Cleanup) -> u64 {
    let id = {
        let mut next = lock(&NEXT_ID);
        *next += 1;
        *next
    };
    lock(&CLEANUP).push(Registered { id, what });
    id
}

/// Forgets a process or directory: it was cleaned up, or handed over to `cargo xtask services`.
pub fn unregister(id: u64) {
    lock(&CLEANUP).retain(|registered| registered.id != id);
}

fn emergency_stop() {
    if let Some(group) = *lock(&FOREGROUND) {
        let _ = killpg(group, Signal::SIGKILL);
    }
    let registered = std::mem::take(&mut *lock(&CLEANUP));
    let processes: Vec<(Pid, Signal)> = registered
        .iter()
        .filter_map(|registered| match registered.what {
            Cleanup::Process { pid, signal } => Some((pid, signal)),
            Cleanup::Dir(_) => None,
        })
        .collect();
    for &(pid, signal) in &processes {
        let _ = kill(pid, signal);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    for &(pid, _) in &processes {
        while is_running(pid.as_raw()) && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        if is_running(pid.as_raw()) {
            let _ = kill(pid, Signal::SIGKILL);
        }
    }
    for registered in &registered {
        if let Cleanup::Dir(dir) = &registered.what {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Whether a process exists and has not exited. A zombie counts as exited: in a container
/// whose init does not reap, a stopped server stays a zombie forever.
pub fn is_running(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the command name, which is in parentheses and may hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) if Path::new("/proc/self/stat").exists() => false,
        Err(_) => !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH)),
    }
}

/// The command line of a running process, to make sure a recorded pid still belongs to the
/// server it was recorded for (pids get reused).
pub fn command_line(pid: i32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&byte| byte == 0)
            .map(String::from_utf8_lossy)
            .collect::<Vec<_>>()
            .join(" "),
    )
}

/// Sends `signal`, waits up to `grace` for the process to go, then kills it. `child` is reaped
/// when given, so no zombie stays behind.
pub fn stop(pid: i32, child: Option<&mut Child>, signal: Signal, grace: Duration) -> Result<()> {
    let gone = |child: &mut Option<&mut Child>| match child {
        Some(child) => !matches!(child.try_wait(), Ok(None)),
        None => !is_running(pid),
    };
    let mut child = child;
    if gone(&mut child) {
        return Ok(());
    }
    match kill(Pid::from_raw(pid), signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(error) => bail!("sending {signal} to pid {pid}: {error}"),
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if gone(&mut child) {
            return Ok(());
        }
        thread::sleep(Duration::from_millis(20));
    }
    let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    if let Some(child) = child {
        let _ = child.wait();
    }
    bail!("pid {pid} ignored {signal} for {grace:?} and was killed")
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data that is still usable.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_commands_with_quoted_empty_and_spaced_arguments() {
        let mut command = Command::new("redis-server");
        command.args(["--save", "", "--dir", "/tmp/a b"]);
        assert_eq!(
            describe(&command),
            r#"redis-server --save "" --dir "/tmp/a b""#
        );
    }

    #[test]
    fn sees_its_own_process_and_not_a_reaped_one() {
        assert!(is_running(i32::try_from(std::process::id()).unwrap()));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = pid_of(&child);
        child.wait().unwrap();
        assert!(!is_running(pid));
    }

    #[test]
    fn stop_ends_a_process_that_honours_the_signal() {
        let mut child = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = pid_of(&child);
        stop(
            pid,
            Some(&mut child),
            Signal::SIGTERM,
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(child.try_wait().unwrap().is_some());
    }
}
