//! Bounds-checked little binary codec for the node's records (bucket info,
//! object metadata). Every decoder returns `None` on short or malformed input.

#[derive(Default)]
pub struct Enc {
    pub buf: Vec<u8>,
}

impl Enc {
    pub fn new(version: u8) -> Self {
        // 64 bytes up front: growing from 1 byte reallocated four times per
        // object summary. Capacities end the same (powers of two) as before.
        let mut buf = Vec::with_capacity(64);
        buf.push(version);
        Enc { buf }
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.buf.extend_from_slice(v);
        self
    }
    pub fn str(&mut self, v: &str) -> &mut Self {
        self.bytes(v.as_bytes())
    }
    pub fn opt_str(&mut self, v: Option<&str>) -> &mut Self {
        match v {
            Some(s) => self.u8(1).str(s),
            None => self.u8(0),
        }
    }
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

pub struct Dec<'a> {
    buf: &'a [u8],
}

impl<'a> Dec<'a> {
    /// Starts decoding; `None` unless the first byte is `version`.
    pub fn new(buf: &'a [u8], version: u8) -> Option<Self> {
        let (&v, rest) = buf.split_first()?;
        (v == version).then_some(Dec { buf: rest })
    }
    /// Decodes a nested payload that carries no version byte of its own.
    pub fn raw(buf: &'a [u8]) -> Self {
        Dec { buf }
    }
    /// Decodes `buf` from its first byte (for a nested encoding that
    /// carries its own version byte).
    pub fn from_raw(buf: &'a [u8]) -> Self {
        Dec { buf }
    }
    /// The bytes not consumed yet.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }
    /// The record's version byte, to pick its decoder.
    pub fn version_of(buf: &[u8]) -> Option<u8> {
        buf.first().copied()
    }
    /// `Some(())` when every byte was consumed: decoders of newer versions
    /// refuse trailing bytes instead of ignoring what they do not know.
    pub fn end(&self) -> Option<()> {
        self.buf.is_empty().then_some(())
    }
    /// A count of at most `max` items (a larger one is corrupt, never truncated).
    pub fn count(&mut self, max: usize) -> Option<usize> {
        let n = self.u32()? as usize;
        (n <= max).then_some(n)
    }
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Some(a)
    }
    pub fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    pub fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.take(2)?.try_into().ok()?))
    }
    pub fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    pub fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn str(&mut self) -> Option<String> {
        String::from_utf8(self.bytes()?.to_vec()).ok()
    }
    pub fn opt_str(&mut self) -> Option<Option<String>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.str()?)),
            _ => None,
        }
    }
    pub fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_truncation() {
        let mut e = Enc::new(7);
        e.u8(1).u16(2).u32(3).u64(4).i64(-5).str("héllo").opt_str(None).opt_str(Some("x"));
        let buf = e.finish();
        let mut d = Dec::new(&buf, 7).unwrap();
        assert_eq!(d.u8(), Some(1));
        assert_eq!(d.u16(), Some(2));
        assert_eq!(d.u32(), Some(3));
        assert_eq!(d.u64(), Some(4));
        assert_eq!(d.i64(), Some(-5));
        assert_eq!(d.str().as_deref(), Some("héllo"));
        assert_eq!(d.opt_str(), Some(None));
        assert_eq!(d.opt_str(), Some(Some("x".into())));
        assert!(Dec::new(&buf, 8).is_none());
        for cut in 1..buf.len() {
            let mut d = Dec::new(&buf[..cut], 7).unwrap();
            let ok = (|| {
                d.u8()?; d.u16()?; d.u32()?; d.u64()?; d.i64()?; d.str()?; d.opt_str()?; d.opt_str()
            })();
            assert!(ok.is_none(), "cut {cut}");
        }
    }
}
