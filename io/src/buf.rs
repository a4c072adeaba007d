//! Buffers that O_DIRECT accepts: heap memory aligned to [`BLOCK`].

use std::alloc::{self, Layout};
use std::ptr::NonNull;

use crate::format::{align_up, BLOCK};

/// Heap buffer aligned to 4096 bytes, with a fixed capacity (a multiple of
/// 4096). Every byte up to `capacity()` is initialised memory: zeroed when
/// first allocated, or left from its last use when it comes from this
/// thread's pool (see [`AlignedBuf::with_capacity`]); writers zero what they
/// write to disk beyond their data.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
    /// Set once [`AlignedBuf::keep_alive`] handed out a handle: the
    /// allocation then belongs to the handles (this one included) and is
    /// released with the last of them.
    shared: Option<std::sync::Arc<SharedBlock>>,
}

/// An allocation of an [`AlignedBuf`] kept after the buffer is dropped
/// (see [`AlignedBuf::keep_alive`]): returned to the pool of the thread
/// that drops the last handle.
pub struct SharedBlock {
    ptr: NonNull<u8>,
    cap: usize,
}

// The block is only freed (never read or written) through the handle.
unsafe impl Send for SharedBlock {}
unsafe impl Sync for SharedBlock {}

impl Drop for SharedBlock {
    fn drop(&mut self) {
        AlignedBuf::release(self.ptr, self.cap);
    }
}

// The buffer owns its allocation exclusively, like a Vec<u8>.
unsafe impl Send for AlignedBuf {}
unsafe impl Sync for AlignedBuf {}

/// Capacities kept in the per-thread pool, and how many of each: the data
/// record buffers of a streamed body (the node's body buffers start at
/// 128 KiB and double up to 1 MiB, so a 1 MiB object is records of 128,
/// 128, 256 and 512 KiB, each read back whole by a GET), and the small
/// ones of reads and commits. Without the 128-512 KiB classes every GET
/// of such an object allocated and zeroed three fresh buffers (6% of a
/// reactor's time at ~600 1 MiB GETs/s, issue 17).
/// Requests up to 16 blocks are rounded up to a power of two blocks, so
/// that the odd sizes of small bodies and commit records (a 4 KiB PUT's
/// data buffer is 3 blocks) come from the pool too instead of a fresh
/// zeroed allocation per request (the zeroing was 18% of a 4 KiB PUT's
/// instructions). The "+ 2 blocks" classes are the block streams of a
/// striped record coded with k = 2 (2+1 on 3 nodes, 2+2 on 4): half of a
/// 128 KiB, 512 KiB or 1 MiB record plus a 48-byte block header, which
/// spills into one more block (zeroing them was 2.5% of a 4-node
/// cluster's CPU under 1 MiB PUTs). The 128-512 KiB classes keep 64: at
/// 64 connections of 1 MiB PUTs a core has 32 bodies in flight, each
/// with a buffer being filled and one being written, and with 16 the
/// misses' zeroing was 1.6% of all CPU samples (0.5% with 64). A pool
/// never holds more than its thread had in use at once.
const POOL_CLASSES: [(usize, usize); 13] = [
    (BLOCK, 256),
    (2 * BLOCK, 64),
    (4 * BLOCK, 64),
    (8 * BLOCK, 64),
    (16 * BLOCK, 64),
    (64 * 1024 + BLOCK, 32),
    ((128 << 10) + BLOCK, 64),
    ((256 << 10) + BLOCK, 64),
    ((512 << 10) + BLOCK, 64),
    ((1 << 20) + BLOCK, 64),
    ((64 << 10) + 2 * BLOCK, 16),
    ((256 << 10) + 2 * BLOCK, 16),
    ((512 << 10) + 2 * BLOCK, 16),
];

struct Pool {
    free: [Vec<NonNull<u8>>; POOL_CLASSES.len()],
}

/// Largest capacity rounded up to a power of two blocks.
const ROUNDED_MAX: usize = 16 * BLOCK;

impl Pool {
    fn class(cap: usize) -> Option<usize> {
        POOL_CLASSES.iter().position(|(c, _)| *c == cap)
    }

    /// The capacity a request for `cap` (a multiple of BLOCK) gets.
    fn rounded(cap: usize) -> usize {
        if cap <= ROUNDED_MAX {
            cap.next_power_of_two().max(BLOCK)
        } else {
            cap
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        for (i, list) in self.free.iter_mut().enumerate() {
            for ptr in list.drain(..) {
                // SAFETY: pooled pointers were allocated with this class's layout.
                unsafe { alloc::dealloc(ptr.as_ptr(), AlignedBuf::layout(POOL_CLASSES[i].0)) }
            }
        }
    }
}

thread_local! {
    // Per reactor thread: buffers are recycled where they are freed.
    static POOL: std::cell::RefCell<Pool> = std::cell::RefCell::new(Pool { free: Default::default() });
}

impl AlignedBuf {
    /// A buffer of at least `capacity` bytes, rounded up to 4096 (and at
    /// least 4096; up to 64 KiB, to a power of two), from this thread's
    /// pool when one of that size is free (contents: whatever it held
    /// last), else freshly zeroed. Aborts on allocation failure like `Vec`.
    pub fn with_capacity(capacity: usize) -> AlignedBuf {
        let cap = Pool::rounded(align_up(capacity.max(1) as u64) as usize);
        if let Some(class) = Pool::class(cap) {
            let reused = POOL.try_with(|p| p.borrow_mut().free[class].pop()).ok().flatten();
            if let Some(ptr) = reused {
                return AlignedBuf { ptr, len: 0, cap, shared: None };
            }
        }
        Self::zeroed(cap)
    }

    /// A buffer of at least `capacity` bytes for one transient use whose
    /// size varies (a commit batch's record): above the sizes rounded to a
    /// power of two, the smallest pooled class that holds it (at most
    /// twice the size), so it comes from the pool instead of a fresh
    /// zeroed allocation per odd size (under 4 KiB PUTs at 64
    /// connections, 93 of 510 batch records, 4% of a PUT's instructions).
    pub fn with_capacity_pooled(capacity: usize) -> AlignedBuf {
        let cap = Pool::rounded(align_up(capacity.max(1) as u64) as usize);
        let class = POOL_CLASSES.iter().map(|(c, _)| *c).filter(|&c| c >= cap).min();
        Self::with_capacity(class.filter(|&c| c <= 2 * cap).unwrap_or(cap))
    }

    /// A freshly zeroed buffer (never from the pool).
    pub fn zeroed(capacity: usize) -> AlignedBuf {
        let cap = align_up(capacity.max(1) as u64) as usize;
        let layout = Self::layout(cap);
        // SAFETY: layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, len: 0, cap, shared: None }
    }

    fn layout(cap: usize) -> Layout {
        match Layout::from_size_align(cap, BLOCK) {
            Ok(l) => l,
            // cap is a multiple of BLOCK below isize::MAX for any buffer we could allocate.
            Err(_) => panic!("AlignedBuf capacity {cap} overflows a Layout"),
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: [0, len) is inside the allocation and initialised.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and we hold &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The whole capacity, initialised bytes included.
    pub(crate) fn full_mut(&mut self) -> &mut [u8] {
        self.range_mut(0..self.cap)
    }

    /// Bytes `r` of the capacity (initialised memory), made from the raw
    /// pointer: no reference to the rest of the buffer is created, so
    /// bytes outside `r` that a [`keep_alive`](Self::keep_alive) holder
    /// reads stay untouched. Panics past the capacity.
    pub fn range_mut(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        assert!(r.start <= r.end && r.end <= self.cap, "AlignedBuf range {r:?} past capacity {}", self.cap);
        // SAFETY: inside the allocation, whose every byte is initialised; we hold &mut self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(r.start), r.end - r.start) }
    }

    /// The first `head` bytes to write, and the `len` bytes after them to
    /// read, at once (disjoint; made from the raw pointer like `range_mut`).
    pub fn head_and_next(&mut self, head: usize, len: usize) -> (&mut [u8], &[u8]) {
        assert!(head + len <= self.cap, "AlignedBuf head {head} + {len} past capacity {}", self.cap);
        // SAFETY: two disjoint ranges inside the initialised allocation; we hold &mut self.
        unsafe {
            (
                std::slice::from_raw_parts_mut(self.ptr.as_ptr(), head),
                std::slice::from_raw_parts(self.ptr.as_ptr().add(head), len),
            )
        }
    }

    /// A handle that keeps this buffer's memory allocated (not returned to
    /// the pool, not reused) until it is dropped, even after the buffer is.
    /// For a reader of bytes already written (an MD5 lane hashing a body
    /// where it was received): the buffer's owner must not change those
    /// bytes while a handle lives. One allocation the first time, then a
    /// reference count.
    pub fn keep_alive(&mut self) -> std::sync::Arc<SharedBlock> {
        let (ptr, cap) = (self.ptr, self.cap);
        self.shared.get_or_insert_with(|| std::sync::Arc::new(SharedBlock { ptr, cap })).clone()
    }

    /// Appends `data`. Panics if it does not fit: the capacity is fixed
    /// because the address must stay aligned and stable.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        let end = self.len + data.len();
        assert!(end <= self.cap, "AlignedBuf overflow: {end} > {}", self.cap);
        let start = self.len;
        self.range_mut(start..end).copy_from_slice(data);
        self.len = end;
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Sets the length to `len`, zeroing the bytes between the old length
    /// and `len` (padding that goes to disk must not carry old contents).
    pub fn zero_extend(&mut self, len: usize) {
        let start = self.len.min(len);
        self.set_len(len);
        self.range_mut(start..len).fill(0);
    }

    /// Sets the length. Every byte below the capacity is initialised memory
    /// (zeroed at allocation or written since), so this is safe; it panics
    /// past the capacity.
    pub fn set_len(&mut self, len: usize) {
        assert!(
            len <= self.cap,
            "AlignedBuf::set_len {len} > capacity {}",
            self.cap
        );
        self.len = len;
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // Shared: the last handle releases the allocation.
        if self.shared.take().is_none() {
            Self::release(self.ptr, self.cap);
        }
    }
}

impl AlignedBuf {
    /// Returns an allocation to this thread's pool, or frees it.
    fn release(ptr: NonNull<u8>, cap: usize) {
        if let Some(class) = Pool::class(cap) {
            let kept = POOL
                .try_with(|p| {
                    let mut p = p.borrow_mut();
                    let list = &mut p.free[class];
                    if list.len() < POOL_CLASSES[class].1 {
                        list.push(ptr);
                        true
                    } else {
                        false
                    }
                })
                .unwrap_or(false);
            if kept {
                return;
            }
        }
        // SAFETY: allocated in zeroed() with this very layout, and no
        // buffer or handle refers to it any more.
        unsafe { alloc::dealloc(ptr.as_ptr(), Self::layout(cap)) }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("cap", &self.cap)
            .finish()
    }
}

// SAFETY: the pointer is stable for the buffer's life (the heap block does
// not move when the AlignedBuf does) and [0, len) is initialised.
unsafe impl monoio::buf::IoBuf for AlignedBuf {
    fn read_ptr(&self) -> *const u8 {
        self.ptr.as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.len
    }
}

// SAFETY: as above; the kernel may write up to the capacity.
unsafe impl monoio::buf::IoBufMut for AlignedBuf {
    fn write_ptr(&mut self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    fn bytes_total(&mut self) -> usize {
        self.cap
    }

    unsafe fn set_init(&mut self, pos: usize) {
        self.len = pos.min(self.cap);
    }
}

/// A buffer for one data record. The record's header block (4096 bytes) is
/// reserved in front of the data, so the body can be filled in place (from a
/// socket, say) and written to disk with no extra copy.
pub struct DataBuf {
    buf: AlignedBuf,
    max_data_bytes: usize,
}

impl DataBuf {
    /// Room for up to `max_data_bytes` of data (the node uses 1 MiB).
    /// [`crate::Shard::write_data`] refuses more than [`crate::MAX_DATA_BYTES`].
    pub fn new(max_data_bytes: usize) -> DataBuf {
        let mut buf = AlignedBuf::with_capacity(BLOCK + max_data_bytes);
        buf.set_len(BLOCK);
        DataBuf {
            buf,
            max_data_bytes,
        }
    }

    /// The unfilled room after the data; fill a prefix, then [`advance`](Self::advance).
    pub fn spare_mut(&mut self) -> &mut [u8] {
        let start = self.buf.len();
        let end = BLOCK + self.max_data_bytes;
        self.buf.range_mut(start..end)
    }

    /// See [`AlignedBuf::keep_alive`]: the data bytes filled so far never
    /// change after (a writer only adds to the header block and after
    /// the data), so a handle holder may read them until it drops it.
    pub fn keep_alive(&mut self) -> std::sync::Arc<SharedBlock> {
        self.buf.keep_alive()
    }

    /// Marks `n` more bytes of the spare room as data. Panics past the room.
    pub fn advance(&mut self, n: usize) {
        assert!(n <= self.remaining(), "DataBuf::advance past its room");
        let len = self.buf.len() + n;
        self.buf.set_len(len);
    }

    /// Appends `data` (a copy); panics past the room.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.spare_mut()[..data.len()].copy_from_slice(data);
        self.advance(data.len());
    }

    pub fn data(&self) -> &[u8] {
        &self.buf.as_slice()[BLOCK..]
    }

    pub fn data_len(&self) -> usize {
        self.buf.len() - BLOCK
    }

    pub fn remaining(&self) -> usize {
        self.max_data_bytes - self.data_len()
    }

    pub fn is_full(&self) -> bool {
        self.remaining() == 0
    }

    /// Empties the data so the buffer can be filled again.
    pub fn clear(&mut self) {
        self.buf.set_len(BLOCK);
    }

    /// The whole record buffer (header block + data) for the writer.
    pub(crate) fn into_record(self) -> AlignedBuf {
        self.buf
    }
}

// SAFETY: the heap block does not move when the DataBuf does; [0, len)
// of the record (header block + data) is initialised, and every byte up
// to the capacity is initialised memory (`AlignedBuf`). A receive writes
// only where it is pointed: use `slice_mut(record_len()..)` to fill the
// spare room after the data (writing into the header block is harmless,
// the writer rewrites it, but it would not count as data).
unsafe impl monoio::buf::IoBuf for DataBuf {
    fn read_ptr(&self) -> *const u8 {
        self.buf.as_slice().as_ptr()
    }

    fn bytes_init(&self) -> usize {
        self.buf.len()
    }
}

// SAFETY: as above; the room ends at the header block plus `max_data_bytes`.
unsafe impl monoio::buf::IoBufMut for DataBuf {
    fn write_ptr(&mut self) -> *mut u8 {
        // Raw: the kernel writes only into the spare room it is pointed at.
        self.buf.ptr.as_ptr()
    }

    fn bytes_total(&mut self) -> usize {
        BLOCK + self.max_data_bytes
    }

    unsafe fn set_init(&mut self, pos: usize) {
        self.buf.set_len(pos.clamp(BLOCK, BLOCK + self.max_data_bytes));
    }
}

impl DataBuf {
    /// The header block plus the data: where the spare room begins.
    pub fn record_len(&self) -> usize {
        self.buf.len()
    }
}

/// Equal when the data is (the room and the header block do not count).
impl PartialEq for DataBuf {
    fn eq(&self, other: &Self) -> bool {
        self.data() == other.data()
    }
}

impl std::fmt::Debug for DataBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataBuf")
            .field("data_len", &self.data_len())
            .field("max_data_bytes", &self.max_data_bytes)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_rounded() {
        let b = AlignedBuf::with_capacity(1);
        assert_eq!(b.capacity(), BLOCK);
        assert_eq!(b.read_ptr_addr() % BLOCK, 0);
        let b = AlignedBuf::with_capacity(BLOCK + 1);
        assert_eq!(b.capacity(), 2 * BLOCK);
        assert_eq!(b.read_ptr_addr() % BLOCK, 0);
    }

    #[test]
    fn small_sizes_round_to_pooled_classes() {
        for (want, cap) in [(3 * BLOCK, 4 * BLOCK), (5 * BLOCK, 8 * BLOCK), (16 * BLOCK, 16 * BLOCK), (19 * BLOCK, 19 * BLOCK)] {
            let b = AlignedBuf::with_capacity(want);
            assert_eq!(b.capacity(), cap, "{want}");
            assert_eq!(Pool::class(cap).is_some(), cap <= 16 * BLOCK, "{want}");
        }
        // A freed buffer of a class is handed out again (same address).
        let b = AlignedBuf::with_capacity(3 * BLOCK);
        let addr = b.read_ptr_addr();
        drop(b);
        let again = AlignedBuf::with_capacity(4 * BLOCK - 7);
        assert_eq!(again.read_ptr_addr(), addr);
    }

    #[test]
    fn streamed_body_record_sizes_are_pooled() {
        for data in [64 << 10, 128 << 10, 256 << 10, 512 << 10, 1 << 20] {
            let b = AlignedBuf::with_capacity(BLOCK + data);
            assert!(Pool::class(b.capacity()).is_some(), "a record of {data} data bytes is not pooled");
            let addr = b.read_ptr_addr();
            drop(b);
            assert_eq!(AlignedBuf::with_capacity(BLOCK + data).read_ptr_addr(), addr, "{data}: not reused");
        }
    }

    #[test]
    fn two_way_block_streams_are_pooled() {
        // A 2+m stream of a 128 KiB, 512 KiB or 1 MiB record: half of it
        // and one 48-byte block header.
        for record in [128 << 10, 512 << 10, 1 << 20] {
            let b = DataBuf::new(record / 2 + 48);
            let addr = b.buf.read_ptr_addr();
            assert!(Pool::class(b.buf.capacity()).is_some(), "the stream of a {record}-byte record is not pooled");
            drop(b);
            assert_eq!(DataBuf::new(record / 2 + 48).buf.read_ptr_addr(), addr, "{record}: not reused");
        }
    }

    impl AlignedBuf {
        fn read_ptr_addr(&self) -> usize {
            self.ptr.as_ptr() as usize
        }
    }

    /// A kept buffer's memory is not reused while a handle lives, even
    /// after the buffer is dropped; it goes back to the pool with the
    /// last handle. Its data stays as written.
    #[test]
    fn kept_memory_outlives_its_buffer_and_returns_to_the_pool_after() {
        let mut d = DataBuf::new(128 << 10);
        d.extend_from_slice(b"received bytes");
        let keep = d.keep_alive();
        let again = d.keep_alive();
        assert!(std::sync::Arc::ptr_eq(&keep, &again), "one handle shared, not one per call");
        drop(again);
        let at = d.data().as_ptr();
        let addr = d.buf.read_ptr_addr();
        drop(d);
        let other = DataBuf::new(128 << 10);
        assert_ne!(other.buf.read_ptr_addr(), addr, "reused while kept");
        // SAFETY: `keep` holds the allocation, and nothing wrote to it since.
        assert_eq!(unsafe { std::slice::from_raw_parts(at, 14) }, b"received bytes");
        drop(keep);
        assert_eq!(DataBuf::new(128 << 10).buf.read_ptr_addr(), addr, "not back in the pool");
        drop(other);
    }

    #[test]
    fn varying_transient_sizes_come_from_the_pool() {
        // A batch record of 100 KiB: the 128 KiB + 1 block class.
        let b = AlignedBuf::with_capacity_pooled(100 << 10);
        assert_eq!(b.capacity(), (128 << 10) + BLOCK);
        let addr = b.read_ptr_addr();
        drop(b);
        assert_eq!(AlignedBuf::with_capacity_pooled(90 << 10).read_ptr_addr(), addr, "not reused");
        // Small sizes round as before; past the largest class, exact.
        assert_eq!(AlignedBuf::with_capacity_pooled(3 * BLOCK).capacity(), 4 * BLOCK);
        assert_eq!(AlignedBuf::with_capacity_pooled(3 << 20).capacity(), 3 << 20);
    }

    #[test]
    fn databuf_fill() {
        let mut d = DataBuf::new(10_000);
        assert_eq!(d.remaining(), 10_000);
        d.spare_mut()[..3].copy_from_slice(b"abc");
        d.advance(3);
        d.extend_from_slice(b"def");
        assert_eq!(d.data(), b"abcdef");
        assert_eq!(d.data_len(), 6);
        assert_eq!(d.remaining(), 9_994);
        assert_eq!(d.spare_mut().len(), 9_994);
        d.clear();
        assert_eq!(d.data_len(), 0);
    }
}
