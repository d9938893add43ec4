//! Starting a sandboxed child process and reaping it with its resource usage.
//!
//! Worker-side layers, applied between fork and exec: cleared environment, stdin /dev/null, own
//! process group, new network (and, when not root, user) namespace where the kernel allows,
//! rlimits (address space, CPU seconds, file size, open files, no core dumps), an unprivileged
//! uid/gid when the worker is root, no_new_privs, and death with the worker (PR_SET_PDEATHSIG).
//! The child adds its own layers (Landlock, seccomp) before libav starts any thread.

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
    /// Put the child in new namespaces (network; user too when not root).
    pub namespaces: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimits {
    pub address_space: u64,
    pub cpu_seconds: u64,
    pub file_size: u64,
    pub open_files: u64,
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

pub fn spawn(spec: &ChildSpec) -> io::Result<Spawned> {
    let mut cmd = Command::new(&spec.bin);
    cmd.args(&spec.args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let root = is_root();
    let user = if root { spec.user } else { None };
    let namespaces = spec.namespaces;
    let limits = spec.limits;
    // SAFETY: only async-signal-safe calls (unshare, setrlimit, setgroups, setgid, setuid, prctl,
    // getppid) run between fork and exec, on values computed before the fork.
    let parent = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            if namespaces {
                let flags = if root { libc::CLONE_NEWNET } else { libc::CLONE_NEWUSER | libc::CLONE_NEWNET };
                check(libc::unshare(flags))?;
            }
            set_rlimit(libc::RLIMIT_AS, limits.address_space)?;
            // SIGXCPU at the soft limit (reported as resource_limit); SIGKILL 5 s later if ignored.
            set_rlimit_pair(libc::RLIMIT_CPU, limits.cpu_seconds, limits.cpu_seconds.saturating_add(5))?;
            set_rlimit(libc::RLIMIT_FSIZE, limits.file_size)?;
            set_rlimit(libc::RLIMIT_NOFILE, limits.open_files)?;
            set_rlimit(libc::RLIMIT_CORE, 0)?;
            if let Some((uid, gid)) = user {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(gid))?;
                check(libc::setuid(uid))?;
            }
            check(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0))?;
            // After setuid: a credential change clears the parent-death signal.
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL))?;
            if libc::getppid() != parent {
                // The worker died before the line above took effect.
                libc::_exit(1);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    Ok(Spawned {
        pid,
        stdout: child.stdout.take(),
        stderr: child.stderr.take(),
        guard: KillGuard { pgid: pid, armed: true },
    })
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
