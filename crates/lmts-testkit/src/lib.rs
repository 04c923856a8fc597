//! Test support: a real PostgreSQL server for the tests, started from the machine's binaries,
//! a recording upstream for the gateway's ([`upstream::RecordingUpstream`]), a real nginx
//! ([`nginx::Nginx`]), and a certificate authority for TLS tests ([`tls::TestAuthority`]).
//!
//! [`PgServer::shared`] starts one server per test binary (`initdb` in a temporary directory,
//! `pg_ctl start` on a free loopback port, as the `postgres` user when the tests run as root)
//! and [`PgServer::database`] hands each test a fresh database in it. When
//! `LMTS_TEST_DATABASE_URL` is set, that server is used instead. A watchdog process stops the
//! server and removes its directory when the test binary exits. When neither is possible, the
//! tests fail with a message saying how to install PostgreSQL: never a silent skip.
//!
//! [`upstream::RecordingUpstream::verifying`] stands in for a service that checks signatures
//! itself: it verifies and records every signed request it receives.
//!
//! ```no_run
//! # async fn run() {
//! let url = lmts_testkit::PgServer::shared().database().await;
//! # let _ = url;
//! # }
//! ```

// A test harness that cannot provide its server must fail the test loudly: panicking is its job.
#![allow(clippy::panic)]

pub mod nginx;
pub mod policy;
pub mod tls;
pub mod upstream;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        OnceLock,
    },
    time::Duration,
};

use sqlx::{Connection, Executor, PgConnection};

/// Environment variable naming an existing server to test against.
pub const ENV_TEST_DATABASE_URL: &str = "LMTS_TEST_DATABASE_URL";

const INSTALL_HINT: &str = "PostgreSQL 15 is needed for these tests: install it (Debian: apt-get install postgresql) so that initdb and pg_ctl are found (in PATH or /usr/lib/postgresql/*/bin), or set LMTS_TEST_DATABASE_URL to a server where the tests may create databases";

/// A PostgreSQL server for tests.
#[derive(Debug)]
pub struct PgServer {
    admin_url: String,
    cluster: Option<Cluster>,
    databases: AtomicUsize,
}

/// A server this harness started and may stop and start again.
#[derive(Debug)]
struct Cluster {
    bin: PathBuf,
    data: PathBuf,
    log: PathBuf,
    port: u16,
    socket_dir: PathBuf,
    as_postgres_user: bool,
    _dir: tempfile::TempDir,
}

fn fail(what: impl AsRef<str>) -> ! {
    panic!("{}\n{INSTALL_HINT}", what.as_ref())
}

/// A loopback address no one listens on now, for a server a test is about to start.
pub fn free_loopback_address() -> std::net::SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .unwrap_or_else(|error| panic!("no free loopback port: {error}"))
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The directory holding `initdb` and `pg_ctl`.
fn find_bin_dir() -> Option<PathBuf> {
    let in_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>());
    let mut candidates: Vec<PathBuf> = in_path.collect();
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = entries
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .collect();
        versions.sort();
        versions.reverse();
        candidates.extend(versions);
    }
    candidates
        .into_iter()
        .find(|dir| {
            dir.join("initdb").is_file()
                && dir.join("pg_ctl").is_file()
                && dir.join("postgres").is_file()
        })
        .map(|dir| std::fs::canonicalize(&dir).unwrap_or(dir))
}

impl Cluster {
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn run(&self, program: &str, args: &[&str]) {
        let output = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| fail(format!("cannot run {program}: {e}")));
        if !output.status.success() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            fail(format!(
                "{program} {args:?} failed: {}{}\nserver log:\n{log}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
    }

    fn start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300",
            self.port,
            self.socket_dir.display()
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                path(&self.data),
                "-l",
                path(&self.log),
                "-o",
                &options,
                "-w",
                "-t",
                "60",
                "start",
            ],
        );
    }

    fn stop(&self) {
        self.run(
            "pg_ctl",
            &[
                "-D",
                path(&self.data),
                "-m",
                "fast",
                "-w",
                "-t",
                "60",
                "stop",
            ],
        );
    }
}

fn path(p: &Path) -> &str {
    p.to_str()
        .unwrap_or_else(|| fail("temporary path is not UTF-8"))
}

impl PgServer {
    /// The server shared by every test of this test binary.
    pub fn shared() -> &'static PgServer {
        static SHARED: OnceLock<PgServer> = OnceLock::new();
        SHARED.get_or_init(PgServer::start)
    }

    /// A server of its own: `LMTS_TEST_DATABASE_URL` if set, else a new private cluster.
    pub fn start() -> PgServer {
        if let Ok(url) = std::env::var(ENV_TEST_DATABASE_URL) {
            if !url.is_empty() {
                return PgServer {
                    admin_url: url,
                    cluster: None,
                    databases: AtomicUsize::new(0),
                };
            }
        }
        Self::start_private()
    }

    /// A new private cluster, even when `LMTS_TEST_DATABASE_URL` is set (tests that stop the
    /// server need one).
    pub fn start_private() -> PgServer {
        let bin =
            find_bin_dir().unwrap_or_else(|| fail("initdb, pg_ctl and postgres were not found"));
        let dir = tempfile::Builder::new()
            .prefix("lmts-pg-")
            .tempdir()
            .unwrap_or_else(|e| fail(format!("temporary directory: {e}")));
        let as_postgres_user = is_root();
        let port = free_loopback_address().port();
        let cluster = Cluster {
            bin,
            data: dir.path().join("data"),
            log: dir.path().join("server.log"),
            port,
            socket_dir: dir.path().to_owned(),
            as_postgres_user,
            _dir: dir,
        };
        if as_postgres_user {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(cluster.socket_dir.as_os_str())
                .status()
                .unwrap_or_else(|e| fail(format!("chown: {e}")));
            if !status.success() {
                fail("cannot give the temporary directory to the postgres user");
            }
        }
        cluster.run(
            "initdb",
            &[
                "-D",
                path(&cluster.data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
                "--no-instructions",
            ],
        );
        cluster.start();
        spawn_watchdog(&cluster);
        PgServer {
            admin_url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            cluster: Some(cluster),
            databases: AtomicUsize::new(0),
        }
    }

    /// A URL of the server's administrative database.
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }

    /// Creates a fresh, empty database and returns its URL.
    pub async fn database(&self) -> String {
        let n = self.databases.fetch_add(1, Ordering::SeqCst);
        let name = format!("lmts_test_{}_{n}", std::process::id());
        let mut admin = connect(&self.admin_url).await;
        admin
            .execute(format!("DROP DATABASE IF EXISTS {name}").as_str())
            .await
            .unwrap_or_else(|e| fail(format!("drop database: {e}")));
        admin
            .execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .unwrap_or_else(|e| fail(format!("create database: {e}")));
        let (base, _) = self
            .admin_url
            .rsplit_once('/')
            .unwrap_or_else(|| fail("admin URL has no database"));
        format!("{base}/{name}")
    }

    /// Stops the server (fast shutdown: connections are cut). Only for a private cluster.
    pub fn stop(&self) {
        self.cluster().stop();
    }

    /// Starts the server again after [`PgServer::stop`].
    pub fn restart(&self) {
        self.cluster().start();
    }

    fn cluster(&self) -> &Cluster {
        self.cluster
            .as_ref()
            .unwrap_or_else(|| panic!("only a cluster started by the harness can be stopped"))
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        if let Some(cluster) = &self.cluster {
            let _ = cluster
                .command("pg_ctl")
                .args(["-D", path(&cluster.data), "-m", "immediate", "-w", "stop"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

async fn connect(url: &str) -> PgConnection {
    let mut last = None;
    for _ in 0..50 {
        match PgConnection::connect(url).await {
            Ok(connection) => return connection,
            Err(error) => last = Some(error),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    fail(format!("cannot connect to {url}: {last:?}"))
}

/// A process that stops the cluster and removes its directory once this test binary exits.
fn spawn_watchdog(cluster: &Cluster) {
    let stop = format!(
        "{}{} -D {} -m immediate -w stop",
        if cluster.as_postgres_user {
            "runuser -u postgres -- "
        } else {
            ""
        },
        cluster.bin.join("pg_ctl").display(),
        cluster.data.display()
    );
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = cluster.socket_dir.display()
    );
    let spawned = Command::new("setsid")
        .args(["bash", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    if let Err(error) = spawned {
        fail(format!("cannot start the PostgreSQL watchdog: {error}"));
    }
}
