//! Parquet input for SelectObjectContent: the footer, then the projected
//! column chunks of the row groups that statistics don't rule out, each
//! read as a range of the object when the decoder asks for it.

use std::ops::Range;

use tessera_io::IoError;
use tessera_select::eventstream::Counters;
use tessera_select::parquet::PStep;
use tessera_select::{SelectParams, Step, Ts};

use super::select::{Source, StreamError};

type Reading = monoio::task::JoinHandle<Result<Vec<Vec<u8>>, IoError>>;

pub struct ParquetScan {
    inner: tessera_select::parquet::ParquetScan,
    /// The next row group's column chunks, read while this one is
    /// decoded (one group ahead: at most twice `MAX_FETCH_BYTES` held).
    ahead: Option<(Vec<Range<u64>>, Reading)>,
}

impl ParquetScan {
    pub async fn open(params: &SelectParams, _src: &Source, size: u64, now: Ts) -> Result<ParquetScan, StreamError> {
        Ok(ParquetScan { inner: tessera_select::parquet::ParquetScan::new(params, size, now)?, ahead: None })
    }

    /// Starts reading the next planned row group, if none is being read.
    fn read_ahead(&mut self, src: &Source) {
        if self.ahead.is_none() {
            if let Some(ranges) = self.inner.next_group_ranges() {
                let h = src.spawn_read_ranges(ranges.clone());
                self.ahead = Some((ranges, h));
            }
        }
    }

    pub fn counters(&self) -> Counters {
        self.inner.counters()
    }

    pub fn drain_output(&mut self, f: impl FnOnce(&[u8])) {
        self.inner.drain_output(f)
    }

    pub fn pending_output(&self) -> usize {
        self.inner.pending_output()
    }

    /// One bounded step: a batch of rows decoded and evaluated, or the
    /// ranges the decoder asked for read and handed to it.
    pub async fn step(&mut self, src: &Source) -> Result<Step, StreamError> {
        Ok(match self.inner.step()? {
            PStep::NeedData(ranges) => {
                // The group read ahead is (almost always) what is asked
                // for; if not, the decoder asks again for what it lacks.
                if let Some((ahead, h)) = self.ahead.take() {
                    let data = h.await?;
                    self.inner.push(ahead, data)?;
                    self.read_ahead(src);
                    return Ok(Step::Continue);
                }
                let mut data = Vec::with_capacity(ranges.len());
                for r in &ranges {
                    data.push(src.read(r.clone()).await?);
                }
                self.inner.read_planned(&ranges);
                self.inner.push(ranges, data)?;
                self.read_ahead(src);
                Step::Continue
            }
            PStep::Continue => Step::Continue,
            PStep::Done => Step::Done,
        })
    }
}
