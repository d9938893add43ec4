//! A private PostgreSQL server for tests that stop and start the database (outage tests).
//! Runs as the `postgres` user when the tests run as root (PostgreSQL refuses root).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub struct PrivatePg {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    pub url: String,
}

fn pg_bin() -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server installed under /usr/lib/postgresql")
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("pg_ctl").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("a PostgreSQL bin directory")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

fn run_as_pg(bin: &Path, tool: &str, args: &[&str]) -> std::process::Output {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    } else {
        Command::new(bin.join(tool))
    };
    cmd.args(args).output().unwrap_or_else(|e| panic!("run {tool}: {e}"))
}

impl PrivatePg {
    pub fn start() -> Self {
        let dir = tempfile::Builder::new().prefix("mediaq-pg-").tempdir().unwrap();
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status().unwrap();
            assert!(status.success());
        }
        let bin = pg_bin();
        let data = dir.path().join("data");
        let out =
            run_as_pg(&bin, "initdb", &["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "--no-sync"]);
        assert!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let pg = Self { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), dir, bin, port };
        pg.resume();
        pg
    }

    fn data(&self) -> String {
        self.dir.path().join("data").to_str().unwrap().to_owned()
    }

    /// Starts (or restarts) the server and waits until it accepts connections.
    pub fn resume(&self) {
        let opts =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
        let log = self.dir.path().join("pg.log");
        let out = run_as_pg(
            &self.bin,
            "pg_ctl",
            &["-D", &self.data(), "-l", log.to_str().unwrap(), "-w", "-t", "30", "-o", &opts, "start"],
        );
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stops the server (fast shutdown: connections are cut).
    pub fn stop(&self) {
        let out = run_as_pg(&self.bin, "pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }
}

impl Drop for PrivatePg {
    fn drop(&mut self) {
        let _ = run_as_pg(&self.bin, "pg_ctl", &["-D", &self.data(), "-m", "immediate", "stop"]);
    }
}
