//! A real nginx for the tests and benchmarks, started from the machine's binary on a free
//! loopback port with a configuration of the test's, in a temporary prefix directory, and
//! stopped when dropped. When nginx is not installed the caller fails with how to install it:
//! never a silent skip.

use std::{
    fmt::Write as _,
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use tempfile::TempDir;

/// How to get nginx where it is missing.
const INSTALL_HINT: &str = "nginx is needed by this test: apt-get install nginx (Debian/Ubuntu)";

/// A running nginx.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    address: SocketAddr,
    dir: TempDir,
}

impl Nginx {
    /// A load balancer on loopback in front of `backends` (round robin, keep-alive upstream
    /// connections, `X-Forwarded-For` appended), answering which backend served each request
    /// in `X-Upstream-Addr`. The request target is passed on unchanged (`proxy_pass` without
    /// a URI part). One worker, so that round robin alternates strictly.
    pub fn load_balancer(backends: &[SocketAddr]) -> Nginx {
        Nginx::start(&load_balancing(backends), "1")
    }

    /// nginx with `workers` worker processes (a number, or `auto`: one per core) and
    /// `http_block` as the inside of its `http { }` block; `{listen}` in it is replaced by the
    /// loopback address chosen.
    pub fn start(http_block: &str, workers: &str) -> Nginx {
        let binary = find_nginx().unwrap_or_else(|| panic!("{INSTALL_HINT}"));
        let dir = tempfile::Builder::new()
            .prefix("lmts-nginx-")
            .tempdir()
            .unwrap_or_else(|error| panic!("temporary directory for nginx: {error}"));
        let address = crate::free_loopback_address();
        let block = http_block.replace("{listen}", &address.to_string());
        let config_path = dir.path().join("nginx.conf");
        std::fs::write(&config_path, configuration(dir.path(), &block, workers))
            .unwrap_or_else(|error| panic!("writing nginx.conf: {error}"));
        let child = Command::new(binary)
            .arg("-p")
            .arg(dir.path())
            .arg("-c")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|error| panic!("starting nginx: {error}\n{INSTALL_HINT}"));
        let nginx = Nginx {
            child,
            address,
            dir,
        };
        nginx.wait_until_listening();
        nginx
    }

    /// Its address.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its origin, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    fn wait_until_listening(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if TcpStream::connect(self.address).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default();
        panic!(
            "nginx did not listen on {} within 10 s:\n{log}",
            self.address
        );
    }
}

impl Drop for Nginx {
    /// SIGTERM (nginx's fast shutdown, which stops its workers too; SIGKILL would orphan
    /// them with the port still open), then SIGKILL if it is still there after 5 s.
    fn drop(&mut self) {
        let stopped = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|status| status.success());
        let deadline = Instant::now() + Duration::from_secs(5);
        while stopped && Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The whole configuration: in the foreground, every path inside `prefix`.
fn configuration(prefix: &Path, http_block: &str, workers: &str) -> String {
    let prefix = prefix.display();
    // As root, nginx would hand its workers to `nobody`, who cannot enter the temporary
    // prefix directory.
    let user = if crate::is_root() { "user root;\n" } else { "" };
    format!(
        "daemon off;\n{user}worker_processes {workers};\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log warn;\nevents {{\n    worker_connections 4096;\n}}\nhttp {{\n    access_log off;\n    client_body_temp_path {prefix}/client_body;\n    proxy_temp_path {prefix}/proxy;\n    fastcgi_temp_path {prefix}/fastcgi;\n    uwsgi_temp_path {prefix}/uwsgi;\n    scgi_temp_path {prefix}/scgi;\n{http_block}}}\n"
    )
}

/// The inside of `http { }` for a load balancer in front of `backends`.
fn load_balancing(backends: &[SocketAddr]) -> String {
    let mut servers = String::new();
    for backend in backends {
        let _ = writeln!(servers, "        server {backend};");
    }
    format!(
        "    upstream backends {{\n{servers}        keepalive 64;\n    }}\n    server {{\n        listen {{listen}};\n        location / {{\n            proxy_pass http://backends;\n            proxy_http_version 1.1;\n            proxy_set_header Connection \"\";\n            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n            add_header X-Upstream-Addr $upstream_addr always;\n        }}\n    }}\n"
    )
}

/// The nginx binary: on `PATH`, or where Debian installs it.
fn find_nginx() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
}
