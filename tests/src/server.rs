//! Start, stop, kill and restart the real `tessera` binary.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};

use crate::raw::{RawConn, RawRequest, RawResponse};

/// How long a starting server may take to print its listening line.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a server may take to exit after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Lines of the server log printed when a test fails.
const LOG_TAIL_LINES: usize = 200;

const READY_PREFIX: &str = "tessera: listening on http://";
/// The same line of a node started with `--tls-cert`.
const READY_PREFIX_TLS: &str = "tessera: listening on https://";

#[derive(Debug, Clone)]
pub struct ServerOpts {
    /// `--threads N`; the server's default when `None`.
    pub threads: Option<usize>,
    /// Content of a users file passed with `--users`.
    pub users: Option<String>,
    /// Extra environment variables for the server process.
    pub env: Vec<(String, String)>,
    /// Existing data directories to use instead of fresh temporary ones.
    pub data_dirs: Option<Vec<PathBuf>>,
    /// Number of fresh data directories when `data_dirs` is `None`.
    pub data_dir_count: usize,
    /// Pass random root credentials through `TESSERA_ACCESS_KEY` /
    /// `TESSERA_SECRET_KEY`. When false the variables are removed from the
    /// server's environment and the server must generate its own.
    pub root_credentials_from_env: bool,
    /// Extra command-line arguments for `tessera server`.
    pub args: Vec<String>,
    /// A command the binary is started through, e.g. `ip netns exec NS`
    /// (see `netns::Net::launcher`); empty: the binary itself. It must
    /// exec the binary (same pid), so signals reach the node.
    pub launcher: Vec<String>,
}

impl Default for ServerOpts {
    fn default() -> Self {
        ServerOpts {
            threads: None,
            users: None,
            env: Vec::new(),
            data_dirs: None,
            data_dir_count: 1,
            root_credentials_from_env: true,
            args: Vec::new(),
            launcher: Vec::new(),
        }
    }
}

/// A running (or stopped) tessera process with its temporary directory.
/// Dropping it kills the process; if the test is panicking, the server's
/// stderr log and stdout are printed first.
pub struct Server {
    opts: ServerOpts,
    tmp: tempfile::TempDir,
    data_dirs: Vec<PathBuf>,
    log_path: PathBuf,
    log_offset_at_start: u64,
    child: Option<Child>,
    addr: SocketAddr,
    stdout_lines: Arc<Mutex<Vec<String>>>,
    pub access_key: String,
    pub secret_key: String,
    /// How many times the process was started.
    pub starts: usize,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(ServerOpts::default())
    }

    pub fn start_with(opts: ServerOpts) -> Server {
        let tmp = tempfile::Builder::new()
            .prefix("tessera-test-")
            .tempdir()
            .expect("create temp dir");
        let data_dirs = match &opts.data_dirs {
            Some(dirs) => dirs.clone(),
            None => (0..opts.data_dir_count.max(1))
                .map(|i| {
                    let d = tmp.path().join(format!("data{i}"));
                    fs::create_dir_all(&d).expect("create data dir");
                    d
                })
                .collect(),
        };
        let (access_key, secret_key) = if opts.root_credentials_from_env {
            (
                random_token(20, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"),
                random_token(40, SECRET_ALPHABET),
            )
        } else {
            (String::new(), String::new())
        };
        let log_path = tmp.path().join("server.log");
        let mut server = Server {
            opts,
            tmp,
            data_dirs,
            log_path,
            log_offset_at_start: 0,
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdout_lines: Arc::new(Mutex::new(Vec::new())),
            access_key,
            secret_key,
            starts: 0,
        };
        server.spawn();
        server
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let bin = binary_path();
        let mut cmd = match self.opts.launcher.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        cmd.arg("server");
        // A fixed `--address` among the args (a node that must come back
        // on the same port) replaces the ephemeral one.
        if !self.opts.args.iter().any(|a| a.starts_with("--address")) {
            cmd.arg("--address").arg("127.0.0.1:0");
        }
        // Every test node gets its own admin port (the default 9001 would
        // be shared by tests running in parallel).
        if !self.opts.args.iter().any(|a| a.starts_with("--admin-address")) {
            cmd.arg("--admin-address").arg("127.0.0.1:0");
        }
        if let Some(n) = self.opts.threads {
            cmd.arg("--threads").arg(n.to_string());
        }
        if let Some(users) = &self.opts.users {
            let path = self.tmp.path().join("users.txt");
            fs::write(&path, users).expect("write users file");
            cmd.arg("--users").arg(path);
        }
        cmd.args(&self.opts.args);
        cmd.args(&self.data_dirs);
        if self.opts.root_credentials_from_env {
            cmd.env("TESSERA_ACCESS_KEY", &self.access_key);
            cmd.env("TESSERA_SECRET_KEY", &self.secret_key);
        } else {
            cmd.env_remove("TESSERA_ACCESS_KEY");
            cmd.env_remove("TESSERA_SECRET_KEY");
        }
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }

        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("open server log");
        self.starts += 1;
        writeln!(log, "===== tessera-tests: start #{} =====", self.starts).expect("write log");
        self.log_offset_at_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log));
        // Each node in a process group of its own, whose parent (this test
        // process) is in the same session: that group is never orphaned.
        // In the test process's group, a node frozen with SIGSTOP woke up
        // when the group was orphaned (the test run's parent gone, as under
        // a detached runner) and another member exited: the kernel sends a
        // newly orphaned group with a stopped member SIGHUP and SIGCONT
        // (cluster_failover's frozen owner woke after 4 s, so no takeover
        // came; its log showed the SIGHUP).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);

        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {:?}: {e}", binary_path()));
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        self.stdout_lines = lines.clone();
        let (tx, rx) = mpsc::channel::<String>();
        // Drains stdout for the life of the process so it never blocks on a
        // full pipe; the first lines also go to the waiting test.
        thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let text = String::from_utf8_lossy(&line).trim_end().to_string();
                        lines.lock().unwrap().push(text.clone());
                        let _ = tx.send(text);
                    }
                }
            }
        });
        self.child = Some(child);

        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(READY_PREFIX).or_else(|| line.strip_prefix(READY_PREFIX_TLS)) {
                        let addr: SocketAddr = rest
                            .trim()
                            .parse()
                            .unwrap_or_else(|e| self.fail(&format!("bad listening line {line:?}: {e}")));
                        // A node in a network namespace listens on its own address.
                        let local = addr.ip().is_loopback() || !self.opts.launcher.is_empty();
                        assert!(local && addr.port() != 0, "listening line {line:?}");
                        self.addr = addr;
                        return;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.fail(&format!("no {READY_PREFIX:?} line within {START_TIMEOUT:?}"))
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.as_mut().and_then(|c| c.wait().ok());
                    self.child = None;
                    self.fail(&format!("server exited before listening: {status:?}"))
                }
            }
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        self.kill_quietly();
        panic!("tessera server: {why}\n{}", self.diagnostics());
    }

    /// The server's stderr log (tail) and stdout, for failure messages.
    pub fn diagnostics(&self) -> String {
        let log = fs::read(&self.log_path).unwrap_or_default();
        let log = String::from_utf8_lossy(&log);
        let lines: Vec<&str> = log.lines().collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        format!(
            "--- server stderr ({}, last {} lines) ---\n{}\n--- server stdout ---\n{}\n---",
            self.log_path.display(),
            tail.len(),
            tail.join("\n"),
            self.stdout_lines().join("\n")
        )
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`, the value of the Host header.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn data_dirs(&self) -> &[PathBuf] {
        &self.data_dirs
    }

    /// The temporary directory holding data dirs, log and users file.
    pub fn temp_dir(&self) -> &Path {
        self.tmp.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The admin listener's address (`tessera: admin on http[s]://...` on
    /// stdout), or None when it is off.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.stdout_lines()
            .iter()
            .find_map(|l| {
                let a = l.strip_prefix("tessera: admin on http://").or_else(|| l.strip_prefix("tessera: admin on https://"))?;
                a.trim().parse().ok()
            })
    }

    /// A GET of the admin API `path`, signed with the root credentials,
    /// that must answer 200: its JSON body.
    pub fn admin_json(&self, path: &str) -> serde_json::Value {
        let admin = self.admin_addr().expect("admin address");
        let req = RawRequest::new("GET", path)
            .header("Host", &admin.to_string())
            .sign(&self.access_key, &self.secret_key, std::time::SystemTime::now());
        let mut c = RawConn::connect(admin);
        c.send(&req.to_bytes()).expect("send");
        let r = c.read_response_for("GET");
        assert_eq!(r.status, 200, "{path}: {}", r.body_text());
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {}", r.body_text()))
    }

    /// `/metrics` from the admin listener, as `name{labels}` → value.
    pub fn scrape_metrics(&self) -> HashMap<String, f64> {
        let addr = self.admin_addr().expect("admin listener address on stdout");
        let req = crate::RawRequest::new("GET", "/metrics").header("Host", &addr.to_string());
        let mut c = crate::RawConn::connect(addr);
        c.send(&req.to_bytes()).expect("send");
        let r = c.read_response_for("GET");
        assert_eq!(r.status, 200, "{}", r.body_text());
        assert!(r.header("content-type").is_some_and(|t| t.starts_with("text/plain; version=0.0.4")));
        let mut out = HashMap::new();
        for line in r.body_text().lines() {
            if line.starts_with('#') || line.is_empty() {
                continue;
            }
            let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad metrics line {line:?}"));
            let v: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
            out.insert(name.to_string(), v);
        }
        out
    }

    /// Lines the current (or last) process printed on stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout_lines.lock().unwrap().clone()
    }

    /// What the current (or last) process wrote to stderr so far.
    pub fn stderr_since_start(&self) -> String {
        let mut f = match File::open(&self.log_path) {
            Ok(f) => f,
            Err(_) => return String::new(),
        };
        let mut out = Vec::new();
        let _ = f.seek(SeekFrom::Start(self.log_offset_at_start));
        let _ = f.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sets an environment variable for the next start.
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.opts.env.retain(|(k, _)| k != key);
        self.opts.env.push((key.to_string(), value.to_string()));
    }

    /// The root credentials the clients use: (access key, secret key).
    pub fn credentials(&self) -> (&str, &str) {
        (&self.access_key, &self.secret_key)
    }

    /// Root credentials the clients use. Tests that let the server generate
    /// its own set them here once they know them.
    pub fn set_credentials(&mut self, access_key: &str, secret_key: &str) {
        self.access_key = access_key.to_string();
        self.secret_key = secret_key.to_string();
    }

    /// A client in the SDK's default configuration (path-style is chosen by
    /// the SDK itself for an IP endpoint; checksums as by default).
    pub fn client(&self) -> aws_sdk_s3::Client {
        self.client_for(&self.access_key, &self.secret_key)
    }

    /// Same as [`Server::client`] with `force_path_style(true)`.
    pub fn client_path_style(&self) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(
            self.config_builder(&self.access_key, &self.secret_key)
                .force_path_style(true)
                .build(),
        )
    }

    pub fn client_for(&self, access_key: &str, secret_key: &str) -> aws_sdk_s3::Client {
        aws_sdk_s3::Client::from_conf(self.config_builder(access_key, secret_key).build())
    }

    /// The default configuration, for tests that need to change one thing.
    pub fn config_builder(&self, access_key: &str, secret_key: &str) -> aws_sdk_s3::config::Builder {
        aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new(access_key, secret_key, None, None, "tessera-tests"))
            .endpoint_url(self.endpoint())
    }

    /// A raw request with the Host header set for this server.
    pub fn raw_request(&self, method: &str, path_and_query: &str) -> RawRequest {
        RawRequest::new(method, path_and_query).header("Host", &self.host())
    }

    /// Opens a new TCP connection to the server.
    pub fn connect(&self) -> RawConn {
        RawConn::connect(self.addr)
    }

    /// Sends one request on a new connection and reads the response.
    pub fn send(&self, req: &RawRequest) -> RawResponse {
        let mut conn = self.connect();
        conn.send(&req.to_bytes()).expect("send request");
        conn.read_response_for(&req.method)
    }

    /// Signs `req` with the root credentials at the current time.
    pub fn sign(&self, req: RawRequest) -> RawRequest {
        req.sign(&self.access_key, &self.secret_key, std::time::SystemTime::now())
    }

    /// SIGKILL, then reap.
    pub fn kill9(&mut self) {
        let child = self.child.as_mut().expect("server not running");
        signal(child.id(), libc::SIGKILL);
        let _ = child.wait();
        self.child = None;
    }

    /// Sends `sig` to the server without waiting (see [`Server::wait_for_exit`]).
    pub fn signal(&self, sig: i32) {
        signal(self.child.as_ref().expect("server not running").id(), sig);
    }

    /// SIGTERM, then wait for the exit; fails the test if the server does not
    /// exit within [`STOP_TIMEOUT`].
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_for_exit()
    }

    /// Waits for the process to exit (after a signal was sent); fails the
    /// test if it does not within [`STOP_TIMEOUT`].
    pub fn wait_for_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server not running");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait().expect("wait for server") {
                return status;
            }
            if Instant::now() > deadline {
                signal(child.id(), libc::SIGKILL);
                let _ = child.wait();
                panic!(
                    "server did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                    self.diagnostics()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGTERM) if it runs, and starts it again on the same
    /// data directories. The port changes: make new clients.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.stop();
        }
        self.spawn();
    }

    /// Starts the server again after [`Server::kill9`] or [`Server::stop`].
    pub fn start_again(&mut self) {
        self.spawn();
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().map(|s| s.is_none()).unwrap_or(false),
            None => false,
        }
    }

    fn kill_quietly(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), libc::SIGKILL);
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let crashed = match self.child.as_mut() {
            Some(c) => c.try_wait().ok().flatten(),
            None => None,
        };
        self.kill_quietly();
        keep_log(&self.log_path, self.addr);
        if thread::panicking() {
            eprintln!("{}", self.diagnostics());
        } else if let Some(status) = crashed {
            // The server died on its own during a test that otherwise passed.
            eprintln!("tessera exited unexpectedly: {status}\n{}", self.diagnostics());
        }
    }
}

/// With `TESSERA_TEST_KEEP_LOGS=DIR`, a copy of the whole server log goes
/// to `DIR/<test thread>-<port>-<pid of the test>.log` when the server is
/// dropped, passed or failed (for chasing a failure that is rare).
fn keep_log(log: &Path, addr: SocketAddr) {
    let Some(dir) = std::env::var_os("TESSERA_TEST_KEEP_LOGS") else { return };
    let dir = PathBuf::from(dir);
    let name = thread::current().name().unwrap_or("test").replace("::", "-");
    let to = dir.join(format!("{name}-{}-{}.log", addr.port(), std::process::id()));
    if let Err(e) = fs::create_dir_all(&dir).and_then(|_| fs::copy(log, &to)) {
        eprintln!("TESSERA_TEST_KEEP_LOGS: copying {} to {}: {e}", log.display(), to.display());
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
    let rc = unsafe { libc::kill(pid as libc::pid_t, sig) };
    assert_eq!(rc, 0, "kill({pid}, {sig}): {}", std::io::Error::last_os_error());
}

const SECRET_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn random_token(len: usize, alphabet: &[u8]) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect()
}

/// The workspace root: the parent of this crate's directory.
/// A fresh server with one bucket `name` and a default-configuration client.
pub async fn with_bucket(name: &str) -> (Server, aws_sdk_s3::Client) {
    let server = Server::start();
    let s3 = server.client();
    crate::data::ok(s3.create_bucket().bucket(name).send().await, "create bucket");
    (server, s3)
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `TESSERA_BIN` if set; otherwise the binary of the test's own profile in
/// the target directory, brought up to date once per test process (a no-op
/// when fresh, and never a stale binary under test).
pub fn binary_path() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("TESSERA_BIN") {
            return PathBuf::from(bin);
        }
        let root = workspace_root();
        let target = match std::env::var_os("CARGO_TARGET_DIR") {
            Some(dir) => root.join(dir), // join keeps an absolute dir as is
            None => root.join("target"),
        };
        let release = !cfg!(debug_assertions);
        let bin = target.join(if release { "release" } else { "debug" }).join("tessera");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.current_dir(&root).args(["build", "-p", "tessera-node", "--bin", "tessera"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "cargo build -p tessera-node failed: {status}");
        assert!(bin.exists(), "cargo build did not produce {}", bin.display());
        bin
    })
    .clone()
}

/// A metric of `Server::scrape_metrics` summed over its label sets.
pub fn metric_total(m: &HashMap<String, f64>, name: &str) -> f64 {
    m.iter().filter(|(k, _)| k.split('{').next() == Some(name)).map(|(_, v)| v).sum()
}

/// Waits (polling every 100 ms) until `metric_total` of `name` on `srv` is
/// `want`; panics with the last value after `deadline`.
pub fn wait_metric_total(srv: &Server, name: &str, want: f64, deadline: Duration) {
    let start = Instant::now();
    loop {
        let got = metric_total(&srv.scrape_metrics(), name);
        if got == want {
            return;
        }
        assert!(start.elapsed() < deadline, "{name} is {got}, not {want}");
        thread::sleep(Duration::from_millis(100));
    }
}
