//! The transcoder child's own sandbox layers, applied while it still has a single thread (before
//! libav opens anything): Landlock (read the input, write the job directory, no TCP, scoped
//! signals and abstract sockets), no_new_privs, then a seccomp-bpf filter that kills the process
//! on network, exec, debugging, namespace and kernel-administration system calls.

use std::{collections::BTreeMap, path::Path};

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, CompatLevel, Compatible, LandlockStatus, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};
use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, SeccompRule, TargetArch};

use crate::protocol::SandboxLayers;

/// Read-only paths every child may read: shared libraries (already mapped, but dlopen and
/// glibc re-read them) and the kernel's random source (libav seeds from it).
const SYSTEM_READ: [&str; 6] =
    ["/usr/lib", "/lib", "/lib64", "/etc/ld.so.cache", "/dev/urandom", "/usr/share/zoneinfo"];

/// System calls that end the process (SIGSYS). Nothing a decoder or muxer needs.
const FORBIDDEN: &[libc::c_long] = &[
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
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
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

/// Applies every layer it can and reports which took effect. `readable` is the input file;
/// `writable` is the job directory (the output is created in it).
pub fn apply(readable: &Path, writable: &Path) -> SandboxLayers {
    let (landlock, landlock_abi) = match landlock(readable, writable) {
        Ok(status) => status,
        Err(e) => {
            eprintln!("mediaq-transcode: landlock not applied: {e}");
            ("none".to_owned(), 0)
        }
    };
    // SAFETY: prctl with constant arguments.
    let no_new_privs = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } == 0
        && unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) } == 1;
    let seccomp = match seccomp() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("mediaq-transcode: seccomp filter not applied: {e}");
            false
        }
    };
    SandboxLayers { landlock, landlock_abi, no_new_privs, seccomp }
}

fn landlock(readable: &Path, writable: &Path) -> Result<(String, i32), landlock::RulesetError> {
    let abi = ABI::V10;
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))?
        .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)?
        .create()?
        .add_rules(path_beneath_rules(SYSTEM_READ.iter().filter(|p| Path::new(p).exists()), AccessFs::from_read(abi)))?
        .add_rules(path_beneath_rules([readable], AccessFs::from_read(abi)))?
        .add_rules(path_beneath_rules([writable], AccessFs::from_all(abi)))?
        .restrict_self()?;
    let effective = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi as i32,
        _ => 0,
    };
    let label = match status.ruleset {
        RulesetStatus::FullyEnforced => "full",
        RulesetStatus::PartiallyEnforced => "partial",
        RulesetStatus::NotEnforced => "none",
    };
    Ok((label.to_owned(), effective))
}

fn seccomp() -> Result<(), Box<dyn std::error::Error>> {
    let rules: BTreeMap<i64, Vec<SeccompRule>> = FORBIDDEN.iter().map(|&nr| (nr, Vec::new())).collect();
    let arch: TargetArch = std::env::consts::ARCH.try_into()?;
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::KillProcess, arch)?;
    let program: BpfProgram = filter.try_into()?;
    seccompiler::apply_filter_all_threads(&program)?;
    Ok(())
}
