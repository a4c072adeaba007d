//! A webhook receiver for notification tests: an HTTP/1.1 server on a
//! thread that records every POSTed JSON event message and answers 200
//! (or 500 while `fail` is above zero, counting down).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long `wait_for` waits.
pub const RECEIVER_DEADLINE: Duration = Duration::from_secs(30);

/// An HTTP/1.1 receiver: records every POSTed JSON body and answers 200
/// (or 500 while `fail` is above zero, counting down).
pub struct Receiver {
    pub addr: SocketAddr,
    events: Arc<Mutex<Vec<Value>>>,
    /// Requests still to answer 500.
    pub fail: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Receiver {
    pub fn start(addr: SocketAddr) -> Receiver {
        let events: Arc<Mutex<Vec<Value>>> = Arc::default();
        let listener = TcpListener::bind(addr).expect("bind receiver");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let fail = Arc::new(AtomicUsize::new(0));
        let (e, s, f) = (events.clone(), stop.clone(), fail.clone());
        let acceptor = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((c, _)) => {
                        let (e, s, f) = (e.clone(), s.clone(), f.clone());
                        conns.push(std::thread::spawn(move || serve(c, e, s, f)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Receiver { addr, events, fail, stop, acceptor: Some(acceptor) }
    }

    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    /// The first record of every message received, in arrival order.
    pub fn records(&self) -> Vec<Value> {
        self.events.lock().unwrap().iter().map(|m| m["Records"][0].clone()).collect()
    }

    /// The records once at least `n` arrived (panics after `RECEIVER_RECEIVER_DEADLINE`).
    pub fn wait_for(&self, n: usize, what: &str) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let r = self.records();
            if r.len() >= n {
                return r;
            }
            assert!(start.elapsed() < RECEIVER_DEADLINE, "{what}: {} of {n} events in {RECEIVER_DEADLINE:?}: {r:#?}", r.len());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    /// Stops listening and closes every connection.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
    }
}

fn serve(mut c: TcpStream, events: Arc<Mutex<Vec<Value>>>, stop: Arc<AtomicBool>, fail: Arc<AtomicUsize>) {
    c.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    while !stop.load(Ordering::SeqCst) {
        // A whole request in `buf`?
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        if let Ok(httparse::Status::Complete(head)) = req.parse(&buf) {
            let len: usize = req
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.parse().ok())
                .unwrap_or(0);
            assert_eq!(req.method, Some("POST"));
            assert_eq!(req.path, Some("/events"));
            assert!(req.headers.iter().any(|h| h.name.eq_ignore_ascii_case("content-type") && h.value == b"application/json"));
            if buf.len() >= head + len {
                let body: Vec<u8> = buf[head..head + len].to_vec();
                buf.drain(..head + len);
                let failing = fail.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok();
                if failing {
                    let _ = c.write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\n\r\nnope");
                } else {
                    events.lock().unwrap().push(serde_json::from_slice(&body).expect("event JSON"));
                    let _ = c.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n");
                }
                continue;
            }
        }
        match c.read(&mut chunk) {
            Ok(0) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}
