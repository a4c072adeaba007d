//! Moving RPC frames in bulk (`cluster_rpc` serves, `cluster_pool` calls).
//!
//! A connection carries many small frames at once (a lane owner's commits
//! to a member, their answers). Read as a header and then a rest, each
//! frame cost two receives, and written one `write_all` at a time, one
//! send; each of those completes on a later turn of the reactor, so one
//! connection carried about one frame per turn however many were queued.
//! On a loaded 4-node cluster on 2 cores a commit's round trip spent
//! 13 ms of its 27 ms on the way. Here:
//!
//! - `FrameReader` receives into one buffer and takes as many frames from
//!   each receive as it holds; a rest larger than the buffer is read
//!   straight into its own allocation (bulk data is not copied twice).
//! - `Coalescer` takes the frames queued behind the first and sends them
//!   with it, in the order they were sealed (frame numbers are part of
//!   the tag), up to `COALESCE_BYTES` per send; a frame that does not fit
//!   goes first in the next send, never copied into a batch.

use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncReadRentExt};
use tessera_cluster::rpc::{FrameHeader, FRAME_HEADER_BYTES};

/// What one receive may take.
pub const READ_BUF_BYTES: usize = 64 * 1024;
/// Most bytes of frames sent together.
pub const COALESCE_BYTES: usize = 64 * 1024;

/// `f`'s output, or "timed out" once `deadline` (if any) passes.
async fn by_deadline<F: std::future::Future>(deadline: Option<Instant>, f: F) -> Result<F::Output, String> {
    match deadline {
        Some(d) => monoio::time::timeout(d.saturating_duration_since(Instant::now()), f).await.map_err(|_| "timed out".into()),
        None => Ok(f.await),
    }
}

/// Reads frames from one side of a connection.
pub struct FrameReader<R> {
    rd: R,
    buf: Vec<u8>,
    /// Where the unconsumed bytes of `buf` start.
    start: usize,
}

impl<R: AsyncReadRent> FrameReader<R> {
    pub fn new(rd: R) -> Self {
        FrameReader { rd, buf: Vec::with_capacity(READ_BUF_BYTES), start: 0 }
    }

    fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// One more receive into the buffer (compacted first when its free
    /// tail is short); it must end by `deadline`.
    async fn fill(&mut self, deadline: Option<Instant>) -> Result<(), String> {
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        } else if self.start > 0 && self.buf.capacity() - self.buf.len() < FRAME_HEADER_BYTES.max(READ_BUF_BYTES / 4) {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.len() == self.buf.capacity() {
            self.buf.reserve(READ_BUF_BYTES);
        }
        let buf = std::mem::take(&mut self.buf);
        let (len, cap) = (buf.len(), buf.capacity());
        let read = self.rd.read(buf.slice_mut(len..cap));
        let (res, slice) = by_deadline(deadline, read).await?;
        self.buf = slice.into_inner();
        match res {
            Ok(0) => Err("connection closed".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The next frame: its header and the rest (sealed payload and tag).
    /// `first` bounds the wait for the whole header, `rest` the wait for
    /// the whole rest after it (a peer sending a byte at a time gains
    /// nothing).
    pub async fn next(&mut self, first: Option<Duration>, rest: Option<Duration>) -> Result<([u8; FRAME_HEADER_BYTES], Vec<u8>), String> {
        let by = first.map(|t| Instant::now() + t);
        while self.buffered() < FRAME_HEADER_BYTES {
            self.fill(by).await?;
        }
        let h: [u8; FRAME_HEADER_BYTES] = self.buf[self.start..self.start + FRAME_HEADER_BYTES].try_into().expect("header length");
        let n = FrameHeader::decode(&h).map_err(|e| e.to_string())?.rest_len();
        self.start += FRAME_HEADER_BYTES;
        let by = rest.map(|t| Instant::now() + t);
        if n > READ_BUF_BYTES / 2 && self.buffered() < n {
            // Bulk: what is buffered, then the remainder read in place.
            let have = self.buffered();
            let mut out = Vec::with_capacity(n);
            out.extend_from_slice(&self.buf[self.start..]);
            self.start = self.buf.len();
            let read = self.rd.read_exact(out.slice_mut(have..n));
            let (res, slice) = by_deadline(by, read).await?;
            res.map_err(|e| e.to_string())?;
            return Ok((h, slice.into_inner()));
        }
        while self.buffered() < n {
            self.fill(by).await?;
        }
        let out = self.buf[self.start..self.start + n].to_vec();
        self.start += n;
        Ok((h, out))
    }
}

/// Batches what a connection's writer sends (see the module's comment).
pub struct Coalescer<T> {
    rx: async_channel::Receiver<T>,
    /// A sealed frame that did not fit the last batch: the next one's first.
    held: Option<Vec<u8>>,
}

impl<T> Coalescer<T> {
    pub fn new(rx: async_channel::Receiver<T>) -> Self {
        Coalescer { rx, held: None }
    }

    /// The next bytes to send: the first frame waited for, then every frame
    /// already queued that fits, each sealed by `seal` in queue order.
    /// None once the channel is closed and drained.
    pub async fn next(&mut self, mut seal: impl FnMut(T) -> Vec<u8>) -> Option<Vec<u8>> {
        let mut batch = match self.held.take() {
            Some(b) => b,
            None => seal(self.rx.recv().await.ok()?),
        };
        while batch.len() < COALESCE_BYTES {
            let Ok(item) = self.rx.try_recv() else { break };
            let frame = seal(item);
            if batch.len() + frame.len() > COALESCE_BYTES {
                self.held = Some(frame);
                break;
            }
            batch.extend_from_slice(&frame);
        }
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use monoio::io::{AsyncWriteRentExt, Splitable};
    use tessera_cluster::rpc::{FrameKind, TAG_BYTES};

    /// A frame as the reader sees it: a valid header for `payload_len`,
    /// then payload and tag bytes that name it.
    fn frame(call: u64, payload_len: usize) -> Vec<u8> {
        let mut f = vec![0u8; FRAME_HEADER_BYTES];
        f[0..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
        f[4] = 1; // request
        f[6..8].copy_from_slice(&7u16.to_le_bytes());
        f[8..16].copy_from_slice(&call.to_le_bytes());
        f.extend((0..payload_len + TAG_BYTES).map(|i| (call as usize * 31 + i) as u8));
        f
    }

    /// Frames sent many to a write, split across writes, and one far
    /// larger than the buffer all come out whole and in order; a stream
    /// that ends inside a frame is an error, not a short frame.
    #[test]
    fn frames_come_out_whole_however_the_bytes_arrive() {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().unwrap().block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let sizes: Vec<usize> = vec![0, 10, 3000, 200_000, 5, 40_000, 70_000, 1, 0, 1 << 20, 16];
            let frames: Vec<Vec<u8>> = sizes.iter().enumerate().map(|(i, &n)| frame(i as u64, n)).collect();
            let all: Vec<u8> = frames.concat();
            let sender = monoio::spawn(async move {
                let mut s = monoio::net::TcpStream::connect(addr).await.unwrap();
                // Odd-sized writes: headers and rests split anywhere.
                let mut at = 0;
                let mut step = 1;
                while at < all.len() {
                    let end = (at + step).min(all.len());
                    let (r, _) = s.write_all(all[at..end].to_vec()).await;
                    r.unwrap();
                    at = end;
                    step = step * 7 % 100_003 + 1;
                }
                // Half a header, then the end of the stream.
                let (r, _) = s.write_all(frame(99, 10)[..9].to_vec()).await;
                r.unwrap();
            });
            let (stream, _) = listener.accept().await.unwrap();
            let (rd, _wr) = stream.into_split();
            let mut reader = FrameReader::new(rd);
            for (i, want) in frames.iter().enumerate() {
                let (h, rest) = reader.next(None, Some(Duration::from_secs(10))).await.unwrap();
                let fh = FrameHeader::decode(&h).unwrap();
                assert_eq!((fh.kind, fh.call), (FrameKind::Request, i as u64));
                assert_eq!(&h[..], &want[..FRAME_HEADER_BYTES], "frame {i}'s header");
                assert!(rest == want[FRAME_HEADER_BYTES..], "frame {i}'s rest ({} bytes)", rest.len());
            }
            sender.await;
            assert!(reader.next(None, None).await.is_err(), "a stream cut inside a header");
        });
    }

    /// A peer that sends a frame's rest a byte at a time is cut when the
    /// whole rest is late, not given the wait again at every byte.
    #[test]
    fn a_trickled_rest_is_cut_at_its_deadline() {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().unwrap().block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let sender = monoio::spawn(async move {
                let mut s = monoio::net::TcpStream::connect(addr).await.unwrap();
                let f = frame(1, 100);
                for b in f {
                    if s.write_all(vec![b]).await.0.is_err() {
                        break;
                    }
                    monoio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            let (stream, _) = listener.accept().await.unwrap();
            let (rd, _wr) = stream.into_split();
            let mut reader = FrameReader::new(rd);
            let started = std::time::Instant::now();
            // Each byte comes well within 300 ms; the whole frame would take about 2.8 s.
            let r = reader.next(Some(Duration::from_secs(10)), Some(Duration::from_millis(300))).await;
            assert_eq!(r.err().as_deref(), Some("timed out"));
            assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
            drop(reader);
            sender.await;
        });
    }

    /// A header that names a payload over the limit is refused before
    /// anything is allocated for it.
    #[test]
    fn an_oversized_header_is_refused() {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new().enable_timer().build().unwrap().block_on(async {
            let listener = monoio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            let sender = monoio::spawn(async move {
                let mut s = monoio::net::TcpStream::connect(addr).await.unwrap();
                let mut f = frame(1, 0);
                f[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
                let (r, _) = s.write_all(f).await;
                r.unwrap();
                s
            });
            let (stream, _) = listener.accept().await.unwrap();
            let (rd, _wr) = stream.into_split();
            let mut reader = FrameReader::new(rd);
            assert!(reader.next(None, None).await.is_err());
            drop(sender.await);
        });
    }

    /// Queued frames go out together, in order, up to the limit; a frame
    /// that does not fit opens the next batch, whole.
    #[test]
    fn queued_frames_are_sent_together_in_order() {
        monoio::RuntimeBuilder::<monoio::FusionDriver>::new().build().unwrap().block_on(async {
            let (tx, rx) = async_channel::unbounded::<Vec<u8>>();
            let mut c = Coalescer::new(rx);
            let small = |b: u8| vec![b; 1000];
            for b in 0..5 {
                tx.send(small(b)).await.unwrap();
            }
            let big = vec![9u8; COALESCE_BYTES * 2];
            tx.send(big.clone()).await.unwrap();
            tx.send(small(10)).await.unwrap();
            let mut order = Vec::new();
            let first = c.next(|f| { order.push(f[0]); f }).await.unwrap();
            assert_eq!(first, (0..5).flat_map(small).collect::<Vec<u8>>(), "the five small frames, in order");
            assert_eq!(c.next(|f| { order.push(f[0]); f }).await.unwrap(), big, "the big frame alone");
            assert_eq!(c.next(|f| { order.push(f[0]); f }).await.unwrap(), small(10));
            assert_eq!(order, vec![0, 1, 2, 3, 4, 9, 10], "sealed in queue order");
            drop(tx);
            assert!(c.next(|f| f).await.is_none());
        });
    }
}
