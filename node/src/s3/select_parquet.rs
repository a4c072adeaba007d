//! Parquet input for SelectObjectContent (placeholder until the reader lands).

use tessera_select::eventstream::Counters;
use tessera_select::{Code, SelectError, SelectParams, Step, Ts};

use super::select::{Source, StreamError};

pub struct ParquetScan {
    counters: Counters,
}

impl ParquetScan {
    pub async fn open(_params: &SelectParams, _src: &Source, _size: u64, _now: Ts) -> Result<ParquetScan, StreamError> {
        Err(StreamError::Select(SelectError::new(Code::UnsupportedParquetType, "Parquet input is not supported yet.")))
    }

    pub fn counters(&self) -> Counters {
        self.counters
    }

    pub fn take_output(&mut self) -> Vec<u8> {
        Vec::new()
    }

    pub fn pending_output(&self) -> usize {
        0
    }

    pub async fn step(&mut self, _src: &Source) -> Result<Step, StreamError> {
        Ok(Step::Done)
    }
}
