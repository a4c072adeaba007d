//! A minimal Chrome DevTools protocol driver over `--remote-debugging-pipe`:
//! Chromium reads NUL-terminated JSON commands on fd 3 and writes replies and
//! events on fd 4. No WebSocket client, no Node.js, no Playwright: two pipes
//! and serde_json (already a test dependency), so the only system package a
//! browser test needs is Debian's `chromium`.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// Longest wait for one protocol reply.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(60);
/// Poll interval of `wait_for`.
pub const POLL: Duration = Duration::from_millis(100);

/// Chromium's path: `$CHROMIUM`, else Debian's.
pub fn chromium_path() -> Option<PathBuf> {
    let candidates = [std::env::var("CHROMIUM").ok(), Some("/usr/bin/chromium".into()), Some("/usr/bin/chromium-browser".into())];
    candidates.into_iter().flatten().map(PathBuf::from).find(|p| p.exists())
}

pub struct Browser {
    child: Child,
    to_browser: std::fs::File,
    replies: mpsc::Receiver<Value>,
    next_id: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0i32; 2];
    // SAFETY: fds is a valid array of two ints for pipe(2) to fill.
    let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "pipe: {}", std::io::Error::last_os_error());
    // SAFETY: pipe(2) succeeded, so both descriptors are open and ours.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

impl Browser {
    /// Starts headless Chromium (flags from the environment notes: no
    /// sandbox as root, no GPU, no background network) with a fresh profile.
    pub fn launch(chromium: &Path, window: (u32, u32)) -> Browser {
        use std::os::fd::AsRawFd;
        let profile = tempfile::tempdir().expect("profile dir");
        let (cmd_read, cmd_write) = pipe();
        let (reply_read, reply_write) = pipe();
        let (child_in, child_out) = (cmd_read.as_raw_fd(), reply_write.as_raw_fd());
        let mut cmd = Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--window-size={},{}", window.0, window.1))
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe dup2 calls.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(child_in, 3) < 0 || libc::dup2(child_out, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start chromium");
        drop(cmd_read);
        drop(reply_write);
        let (tx, replies) = mpsc::channel();
        let reader = std::fs::File::from(reply_read);
        std::thread::spawn(move || {
            let mut r = BufReader::new(reader);
            let mut msg = Vec::new();
            while r.read_until(0, &mut msg).is_ok_and(|n| n > 0) {
                if msg.last() == Some(&0) {
                    msg.pop();
                }
                if let Ok(v) = serde_json::from_slice::<Value>(&msg) {
                    if v.get("id").is_some() && tx.send(v).is_err() {
                        return;
                    }
                }
                msg.clear();
            }
        });
        Browser { child, to_browser: std::fs::File::from(cmd_write), replies, next_id: 1, session: None, _profile: profile }
    }

    /// Sends a command (to the attached page once there is one) and waits
    /// for its reply; a protocol error panics with the method's name.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        bytes.push(0);
        self.to_browser.write_all(&bytes).expect("write to chromium");
        let deadline = Instant::now() + REPLY_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let v = self.replies.recv_timeout(left).unwrap_or_else(|_| panic!("no reply to {method}"));
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method}: {}", v["error"]);
                return v["result"].clone();
            }
        }
    }

    /// Opens `url` in a new page and attaches to it (flat session).
    pub fn open(&mut self, url: &str) {
        let target = self.call("Target.createTarget", json!({ "url": url }));
        let id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = self.call("Target.attachToTarget", json!({ "targetId": id, "flatten": true }));
        self.session = Some(attached["sessionId"].as_str().expect("sessionId").to_string());
    }

    /// Evaluates an expression in the page (promises awaited) and returns
    /// its value; a thrown exception panics with its text.
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call("Runtime.evaluate", json!({ "expression": expr, "awaitPromise": true, "returnByValue": true }));
        if let Some(e) = r.get("exceptionDetails") {
            panic!("page threw in {expr}: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is truthy; panics with `what` and the page's
    /// error line after `timeout`.
    pub fn wait_for(&mut self, what: &str, expr: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let check = format!("(() => {{ try {{ return !!({expr}); }} catch (e) {{ return false; }} }})()");
        while Instant::now() < deadline {
            if self.eval(&check) == json!(true) {
                return;
            }
            std::thread::sleep(POLL);
        }
        let err = self.eval("(document.getElementById('error') || {}).textContent || ''");
        panic!("timed out waiting for {what} (page error: {err})");
    }

    /// Sets the files of the `<input type=file>` matching `selector`.
    pub fn set_files(&mut self, selector: &str, files: &[&Path]) {
        let doc = self.call("DOM.getDocument", json!({}));
        let root = doc["root"]["nodeId"].clone();
        let node = self.call("DOM.querySelector", json!({ "nodeId": root, "selector": selector }));
        let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        self.call("DOM.setFileInputFiles", json!({ "files": files, "nodeId": node["nodeId"] }));
    }

    /// A PNG of the page's viewport.
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine;
        let r = self.call("Page.captureScreenshot", json!({ "format": "png" }));
        base64::engine::general_purpose::STANDARD.decode(r["data"].as_str().expect("png data")).expect("base64 png")
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
