//! The transcoder child's own sandbox layers, applied while it still has a single thread (before
//! libav opens anything): Landlock (read the input, create and write regular files in the job
//! directory and nothing else there, no TCP, scoped signals and abstract sockets), no_new_privs,
//! then two seccomp-bpf filters (see [`seccomp`]): an allowlist of the system calls libav, x264
//! and the Rust runtime make, and a kill list (network, exec, new processes, signals to other
//! processes, links and special files, namespaces, kernel administration).

mod seccomp;

use std::path::Path;

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, LandlockStatus, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use crate::protocol::SandboxLayers;

pub use seccomp::{ALLOWED, KILLED};

/// Read-only paths every child may read: shared libraries (already mapped, but dlopen and
/// glibc re-read them) and the kernel's random source (libav seeds from it).
const SYSTEM_READ: [&str; 6] =
    ["/usr/lib", "/lib", "/lib64", "/etc/ld.so.cache", "/dev/urandom", "/usr/share/zoneinfo"];

/// What the child may do in its job directory: read, write, truncate, create and remove regular
/// files. No symlinks, hard links (`Refer`), FIFOs, sockets, devices or directories: the worker
/// must find a plain file at the output path, never something that points elsewhere or blocks.
fn job_dir_access() -> BitFlags<AccessFs> {
    AccessFs::ReadFile
        | AccessFs::ReadDir
        | AccessFs::WriteFile
        | AccessFs::Truncate
        | AccessFs::MakeReg
        | AccessFs::RemoveFile
}

/// Applies every layer it can and reports which took effect. `readable` is the input file (None
/// when the input arrives on standard input: then no file outside the system libraries is
/// readable); `writable` is the job directory (the output is created in it).
pub fn apply(readable: Option<&Path>, writable: &Path) -> SandboxLayers {
    // Read before the filters go on (getppid is not on the allowlist).
    let pid_namespace = in_own_pid_namespace();
    let rlimits = rlimits_set();
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
    let seccomp = match seccomp::apply() {
        Ok(()) => true,
        Err(e) => {
            eprintln!("mediaq-transcode: seccomp filter not applied: {e}");
            false
        }
    };
    SandboxLayers { landlock, landlock_abi, no_new_privs, seccomp, pid_namespace, rlimits }
}

fn landlock(readable: Option<&Path>, writable: &Path) -> Result<(String, i32), landlock::RulesetError> {
    let abi = ABI::V10;
    let status = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(abi))?
        .handle_access(AccessNet::BindTcp | AccessNet::ConnectTcp)?
        .scope(Scope::AbstractUnixSocket | Scope::Signal)?
        .create()?
        .add_rules(path_beneath_rules(SYSTEM_READ.iter().filter(|p| Path::new(p).exists()), AccessFs::from_read(abi)))?
        .add_rules(path_beneath_rules(readable, AccessFs::from_read(abi)))?
        .add_rules(path_beneath_rules([writable], job_dir_access()))?
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

/// Whether this process runs as the worker's spawn path lays out a PID namespace: its init is
/// PID 1 and the child PID 2. Outside one, PID 2 is the kernel's `kthreadd`, never a process
/// that could run this code, so the pair cannot occur.
fn in_own_pid_namespace() -> bool {
    // SAFETY: getpid and getppid have no preconditions.
    unsafe { libc::getpid() == 2 && libc::getppid() == 1 }
}

/// Whether every resource limit the worker sets is in force (finite): address space, CPU time,
/// file size, open files, processes, and no core dumps. The child reads them itself, so the
/// worker learns on every attempt what the kernel actually applied.
fn rlimits_set() -> bool {
    let finite = |resource| {
        let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit fills a plain struct.
        unsafe { libc::getrlimit(resource, &mut lim) == 0 && lim.rlim_max != libc::RLIM_INFINITY }
    };
    let no_core = {
        let mut lim = libc::rlimit { rlim_cur: 1, rlim_max: 1 };
        // SAFETY: as above.
        unsafe { libc::getrlimit(libc::RLIMIT_CORE, &mut lim) == 0 && lim.rlim_max == 0 }
    };
    [libc::RLIMIT_AS, libc::RLIMIT_CPU, libc::RLIMIT_FSIZE, libc::RLIMIT_NOFILE, libc::RLIMIT_NPROC]
        .into_iter()
        .all(finite)
        && no_core
}
