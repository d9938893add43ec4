//! Starting a sandboxed child process and reaping it with its resource usage.
//!
//! Worker-side layers, applied between fork and exec: cleared environment, stdin /dev/null (or
//! the read end of the pipe that carries a live upload), own
//! process group, new network (and, when not root, user) namespace where the kernel allows,
//! rlimits (address space, CPU seconds, file size, open files, processes, no core dumps), an
//! unprivileged uid/gid when the worker is root, no_new_privs, death with the worker
//! (PR_SET_PDEATHSIG), and, where the kernel allows, a new PID namespace for the child: the
//! process the worker forked stays behind as a minimal supervisor, the namespace's init (PID 1)
//! only waits for the child (PID 2), and each passes on how it ended (see [`supervise`]). When
//! the child ends or is killed, init ends, and with it everything left in the namespace. The child adds its own layers (Landlock, seccomp) before libav
//! starts any thread.

use std::{
    ffi::OsString,
    io,
    os::unix::process::{CommandExt, ExitStatusExt},
    path::PathBuf,
    process::{Command, ExitStatus, Stdio},
    time::Duration,
};

/// Everything needed to start one child.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    pub bin: PathBuf,
    pub args: Vec<OsString>,
    pub limits: Rlimits,
    /// Run as this uid/gid (only honoured when the worker is root).
    pub user: Option<(u32, u32)>,
    /// Put the child in new namespaces.
    pub namespaces: Namespaces,
}

/// Which namespaces the child gets (each where the kernel or the container allows it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Namespaces {
    /// A new network namespace (and a user namespace when the worker is not root).
    pub net: bool,
    /// A new PID namespace, the child its first process.
    pub pid: bool,
}

impl Namespaces {
    pub const ALL: Self = Self { net: true, pid: true };
    pub const NONE: Self = Self { net: false, pid: false };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimits {
    pub address_space: u64,
    pub cpu_seconds: u64,
    pub file_size: u64,
    pub open_files: u64,
    /// RLIMIT_NPROC: processes and threads of the child's user (threads count; new processes are
    /// refused by the child's seccomp filter anyway).
    pub processes: u64,
}

/// Resource usage of a finished child (wait4).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    pub user_cpu: Duration,
    pub system_cpu: Duration,
    pub peak_rss_bytes: u64,
}

pub struct Spawned {
    pub pid: i32,
    pub stdout: Option<std::process::ChildStdout>,
    pub stderr: Option<std::process::ChildStderr>,
    guard: KillGuard,
}

/// Kills the child's whole process group when dropped (attempt canceled, worker shutting down).
struct KillGuard {
    pgid: i32,
    armed: bool,
}

impl Drop for KillGuard {
    fn drop(&mut self) {
        if self.armed {
            // SAFETY: kill(2) on the child's own process group (pgid == child pid, from setpgid).
            unsafe { libc::kill(-self.pgid, libc::SIGKILL) };
        }
    }
}

impl Spawned {
    /// Kills the process group now (the child is reaped by [`Spawned::wait`]).
    pub fn kill(&self) {
        // SAFETY: as in KillGuard::drop.
        unsafe { libc::kill(-self.pid, libc::SIGKILL) };
    }

    /// Waits for the child and returns its status and resource usage. The guard stays armed
    /// until the child is reaped, so dropping this future still kills the child.
    pub async fn wait(mut self) -> io::Result<(ExitStatus, Usage)> {
        let pid = self.pid;
        let result = tokio::task::spawn_blocking(move || wait4(pid)).await.map_err(io::Error::other)?;
        self.guard.armed = false;
        result
    }
}

fn wait4(pid: i32) -> io::Result<(ExitStatus, Usage)> {
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waiting on our own child pid.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == pid {
            break;
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    Ok((
        ExitStatus::from_raw(status),
        Usage {
            user_cpu: tv(usage.ru_utime),
            system_cpu: tv(usage.ru_stime),
            peak_rss_bytes: usage.ru_maxrss as u64 * 1024,
        },
    ))
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Looks up a user's uid and primary gid.
pub fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let cname = std::ffi::CString::new(name).ok()?;
    // SAFETY: getpwnam returns a pointer into static storage or null; read it at once.
    unsafe {
        let pw = libc::getpwnam(cname.as_ptr());
        (!pw.is_null()).then(|| ((*pw).pw_uid, (*pw).pw_gid))
    }
}

/// Starts the child described by `spec`. Its standard input is `stdin` (the read end of a pipe
/// the worker feeds; the worker's copy is closed once the child has it), or /dev/null.
pub fn spawn(spec: &ChildSpec, stdin: Option<std::os::fd::OwnedFd>) -> io::Result<Spawned> {
    let mut cmd = Command::new(&spec.bin);
    cmd.args(&spec.args)
        .env_clear()
        .stdin(stdin.map_or_else(Stdio::null, Stdio::from))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let root = is_root();
    let user = if root { spec.user } else { None };
    let namespaces = spec.namespaces;
    let limits = spec.limits;
    // SAFETY: only async-signal-safe calls (unshare, setrlimit, setgroups, setgid, setuid, prctl,
    // getppid, a raw clone, waitpid, close, kill, _exit) run between fork and exec, on values
    // computed before the fork.
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            if namespaces.net {
                let flags = if root { libc::CLONE_NEWNET } else { libc::CLONE_NEWUSER | libc::CLONE_NEWNET };
                check(libc::unshare(flags))?;
            } else if namespaces.pid && !root {
                // CLONE_NEWPID needs CAP_SYS_ADMIN: a user namespace of its own gives it.
                check(libc::unshare(libc::CLONE_NEWUSER))?;
            }
            set_rlimit(libc::RLIMIT_AS, limits.address_space)?;
            // SIGXCPU at the soft limit (reported as resource_limit); SIGKILL 5 s later if ignored.
            set_rlimit_pair(libc::RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds.saturating_add(5))?;
            set_rlimit(libc::RLIMIT_FSIZE, limits.file_size)?;
            set_rlimit(libc::RLIMIT_NOFILE, limits.open_files)?;
            set_rlimit(libc::RLIMIT_CORE, 0)?;
            set_rlimit(libc::RLIMIT_NPROC, limits.processes)?;
            // Dies with the worker (the supervisor below keeps it: it never changes credentials).
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
            if libc::getppid() != parent {
                // The worker died before the line above took effect.
                libc::_exit(1);
            }
            if namespaces.pid {
                // Before the uid change: a new PID namespace needs CAP_SYS_ADMIN (of the user
                // namespace above, when not root). Raw clones are forks without atfork handlers.
                // This process stays behind as the supervisor; its first child is the namespace's
                // init (PID 1), which forks the transcoder (PID 2). The transcoder is not init
                // itself because init ignores the kernel's SIGXCPU and SIGXFSZ.
                let init =
                    libc::syscall(libc::SYS_clone, (libc::CLONE_NEWPID | libc::SIGCHLD) as libc::c_ulong, 0, 0, 0, 0);
                if init < 0 {
                    return Err(io::Error::last_os_error());
                }
                if init > 0 {
                    supervise(init as libc::pid_t, Relay::Raise);
                }
                check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
                let transcoder = libc::syscall(libc::SYS_clone, libc::SIGCHLD as libc::c_ulong, 0, 0, 0, 0);
                if transcoder < 0 {
                    return Err(io::Error::last_os_error());
                }
                if transcoder > 0 {
                    supervise(transcoder as libc::pid_t, Relay::ExitCode);
                }
            }
            if let Some((uid, gid)) = user {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))?;
            }
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            // Again after setuid (a credential change clears it) and in the namespace's first
            // process (a fork clears it): dies with its parent, the supervisor or the worker.
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
            if !namespaces.pid && libc::getppid() != parent {
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    // Drops the worker's copy of the child's stdin (a pipe's read end): the feeder then sees
    // the pipe close when the child is gone.
    drop(cmd);
    let pid = child.id() as i32;
    Ok(Spawned {
        pid,
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        guard: KillGuard { pgid: pid, armed: true },
    })
}

/// How a supervisor passes on the end of the process it waits for.
#[derive(Clone, Copy)]
enum Relay {
    /// Exit with its exit code; for a signal, 128 + the signal (the namespace's init: signals
    /// it sends itself are ignored).
    ExitCode,
    /// End the same way: the same exit code, or the same signal, where an exit code over 128
    /// (from the init below) stands for a signal.
    Raise,
}

/// A process between the worker and the transcoder, when the transcoder has a PID namespace:
/// it closes every descriptor (so the worker sees the transcoder's stdout and std's exec-status
/// pipe close with the transcoder alone), waits for its child, and ends as [`Relay`] says, so
/// the worker classifies the transcoder's end as if it had forked it directly. Its resource
/// usage, as `wait4` reports it to the worker, includes its waited-for descendants'. Only
/// async-signal-safe calls.
unsafe fn supervise(child: libc::pid_t, relay: Relay) -> ! {
    if libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) != 0 {
        for fd in 0..1024 {
            libc::close(fd);
        }
    }
    let mut status = 0;
    while libc::waitpid(child, &mut status, 0) != child {
        if *libc::__errno_location() != libc::EINTR {
            libc::_exit(70);
        }
    }
    let signal = match (libc::WIFSIGNALED(status), libc::WIFEXITED(status), relay) {
        (true, _, _) => libc::WTERMSIG(status),
        (_, true, Relay::Raise) if libc::WEXITSTATUS(status) > 128 => libc::WEXITSTATUS(status) - 128,
        (_, true, _) => libc::_exit(libc::WEXITSTATUS(status)),
        _ => libc::_exit(70),
    };
    if let Relay::ExitCode = relay {
        libc::_exit(128 + signal);
    }
    libc::signal(signal, libc::SIG_DFL);
    let mut set: libc::sigset_t = std::mem::zeroed();
    libc::sigemptyset(&mut set);
    libc::sigaddset(&mut set, signal);
    libc::sigprocmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
    libc::kill(libc::getpid(), signal);
    libc::_exit(128 + signal)
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

unsafe fn set_rlimit(resource: libc::__rlimit_resource_t, value: u64) -> io::Result<()> {
    set_rlimit_pair(resource, value, value)
}

unsafe fn set_rlimit_pair(resource: libc::__rlimit_resource_t, soft: u64, hard: u64) -> io::Result<()> {
    let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    check(libc::setrlimit(resource, &lim))
}
