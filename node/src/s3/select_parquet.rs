//! Parquet input for SelectObjectContent: the footer, then the projected
//! column chunks of the row groups that statistics don't rule out, each
//! read as a range of the object when the decoder asks for it.

use tessera_select::eventstream::Counters;
use tessera_select::parquet::PStep;
use tessera_select::{SelectParams, Step, Ts};

use super::select::{Source, StreamError};

pub struct ParquetScan {
    inner: tessera_select::parquet::ParquetScan,
}

impl ParquetScan {
    pub async fn open(params: &SelectParams, _src: &Source, size: u64, now: Ts) -> Result<ParquetScan, StreamError> {
        Ok(ParquetScan { inner: tessera_select::parquet::ParquetScan::new(params, size, now)? })
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
                let mut data = Vec::with_capacity(ranges.len());
                for r in &ranges {
                    data.push(src.read(r.clone()).await?);
                }
                self.inner.push(ranges, data)?;
                Step::Continue
            }
            PStep::Continue => Step::Continue,
            PStep::Done => Step::Done,
        })
    }
}
