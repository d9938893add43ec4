//! The child's seccomp-bpf filters, stacked (the kernel applies the strictest verdict):
//!
//! 1. An allowlist: only the system calls that libav, x264, glibc and the Rust runtime make while
//!    converting (found with `scripts/seccomp-trace.sh`, which runs the transcoder under strace on
//!    every corpus file). Anything else fails with `ENOSYS`: `clone3` (glibc then falls back to
//!    `clone`, which the kill list inspects), x32 system-call numbers (`nr | 0x40000000`, which
//!    would otherwise alias the x86_64 calls a denylist names), and every call this list does
//!    not name, present or future.
//! 2. A kill list: calls that no conversion makes and hostile code would (network, exec, new
//!    processes, sessions and process groups, signals to any process but itself, links and
//!    special files, namespaces, kernel administration) end the process with SIGSYS, which the
//!    worker reports as `sandbox_violation`. `clone` is allowed only for threads
//!    (`CLONE_THREAD`): a child can never start another process, so nothing it starts can
//!    outlive it or escape the process-group kill.

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// System calls a conversion makes. Everything else gets `ENOSYS`.
pub const ALLOWED: &[libc::c_long] = &[
    // Files: the input, the output, shared libraries, /dev/urandom.
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_pread64,
    libc::SYS_pwrite64,
    libc::SYS_lseek,
    libc::SYS_open,
    libc::SYS_openat,
    libc::SYS_close,
    libc::SYS_fstat,
    libc::SYS_stat,
    libc::SYS_lstat,
    libc::SYS_newfstatat,
    libc::SYS_statx,
    libc::SYS_access,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_getdents64,
    libc::SYS_fcntl,
    libc::SYS_dup,
    libc::SYS_ioctl,
    libc::SYS_ftruncate,
    libc::SYS_fsync,
    libc::SYS_fdatasync,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_fadvise64,
    libc::SYS_readlink,
    libc::SYS_getcwd,
    // Memory.
    libc::SYS_brk,
    libc::SYS_mmap,
    libc::SYS_munmap,
    libc::SYS_mprotect,
    libc::SYS_mremap,
    libc::SYS_madvise,
    // Threads (clone is inspected by the kill list), signals to itself, time.
    libc::SYS_clone,
    libc::SYS_futex,
    libc::SYS_set_robust_list,
    libc::SYS_rseq,
    libc::SYS_set_tid_address,
    libc::SYS_sched_getaffinity,
    libc::SYS_sched_yield,
    libc::SYS_rt_sigaction,
    libc::SYS_rt_sigprocmask,
    libc::SYS_rt_sigreturn,
    libc::SYS_sigaltstack,
    libc::SYS_tgkill,
    libc::SYS_kill,
    libc::SYS_getpid,
    libc::SYS_gettid,
    libc::SYS_getuid,
    libc::SYS_geteuid,
    libc::SYS_getgid,
    libc::SYS_getegid,
    libc::SYS_getrandom,
    libc::SYS_clock_gettime,
    libc::SYS_clock_getres,
    libc::SYS_gettimeofday,
    libc::SYS_clock_nanosleep,
    libc::SYS_nanosleep,
    libc::SYS_prlimit64,
    libc::SYS_getrlimit,
    libc::SYS_setrlimit,
    libc::SYS_getrusage,
    libc::SYS_uname,
    libc::SYS_sysinfo,
    libc::SYS_prctl,
    libc::SYS_poll,
    libc::SYS_exit,
    libc::SYS_exit_group,
    libc::SYS_restart_syscall,
];

/// System calls that end the process: no conversion makes them.
pub const KILLED: &[libc::c_long] = &[
    libc::SYS_socket,
    libc::SYS_socketpair,
    libc::SYS_connect,
    libc::SYS_bind,
    libc::SYS_listen,
    libc::SYS_accept,
    libc::SYS_accept4,
    libc::SYS_execve,
    libc::SYS_execveat,
    libc::SYS_fork,
    libc::SYS_vfork,
    libc::SYS_setsid,
    libc::SYS_setpgid,
    libc::SYS_tkill,
    libc::SYS_pidfd_open,
    libc::SYS_pidfd_send_signal,
    libc::SYS_pidfd_getfd,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_process_madvise,
    libc::SYS_symlink,
    libc::SYS_symlinkat,
    libc::SYS_link,
    libc::SYS_linkat,
    libc::SYS_mknod,
    libc::SYS_mknodat,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_bpf,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_kcmp,
    libc::SYS_setuid,
    libc::SYS_setgid,
    libc::SYS_setreuid,
    libc::SYS_setregid,
    libc::SYS_setresuid,
    libc::SYS_setresgid,
    libc::SYS_setgroups,
];

/// Signal-sending calls whose first argument is the target process: allowed only at itself.
const SIGNALS: [libc::c_long; 4] =
    [libc::SYS_kill, libc::SYS_tgkill, libc::SYS_rt_sigqueueinfo, libc::SYS_rt_tgsigqueueinfo];

/// Installs both filters on every thread (there is one: this runs before libav starts any).
pub fn apply() -> Result<(), Box<dyn std::error::Error>> {
    let arch: TargetArch = std::env::consts::ARCH.try_into()?;
    let allow: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
    let allowlist = SeccompFilter::new(allow, SeccompAction::Errno(libc::ENOSYS as u32), SeccompAction::Allow, arch)?;

    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() } as u64;
    let mut kill: BTreeMap<i64, Vec<SeccompRule>> = KILLED.iter().map(|&nr| (nr, Vec::new())).collect();
    // clone without CLONE_THREAD makes a process.
    let no_thread =
        SeccompCondition::new(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(libc::CLONE_THREAD as u64), 0)?;
    kill.insert(libc::SYS_clone, vec![SeccompRule::new(vec![no_thread])?]);
    for nr in SIGNALS {
        let elsewhere = SeccompCondition::new(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, me)?;
        kill.insert(nr, vec![SeccompRule::new(vec![elsewhere])?]);
    }
    let killlist = SeccompFilter::new(kill, SeccompAction::Allow, SeccompAction::KillProcess, arch)?;

    // The allowlist goes on last: it does not admit seccomp(2) itself. (The kernel runs every
    // filter and the strictest verdict wins, whatever the order.)
    for filter in [killlist, allowlist] {
        let program: BpfProgram = filter.try_into()?;
        seccompiler::apply_filter_all_threads(&program)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_call_is_both_allowed_and_killed() {
        for nr in KILLED {
            assert!(!ALLOWED.contains(nr), "system call {nr} is on both lists");
        }
    }

    #[test]
    fn filters_compile_for_this_machine() {
        let arch: TargetArch = std::env::consts::ARCH.try_into().unwrap();
        let allow: BTreeMap<i64, Vec<SeccompRule>> = ALLOWED.iter().map(|&nr| (nr, Vec::new())).collect();
        let filter = SeccompFilter::new(allow, SeccompAction::Errno(libc::ENOSYS as u32), SeccompAction::Allow, arch);
        let program: BpfProgram = filter.unwrap().try_into().unwrap();
        assert!(program.len() > ALLOWED.len());
    }
}
