//! S3 Select (SelectObjectContent) without I/O: the SQL dialect (lexer,
//! parser, binding, evaluation), CSV and JSON readers, GZIP/BZIP2 input,
//! CSV and JSON output and AWS's event-stream framing.
//!
//! The node feeds object bytes to an [`Engine`] and frames what it
//! produces with [`eventstream`]; nothing here reads a clock, a file or a
//! socket (`UTCNOW()` is the time the caller passes in).

pub mod agg;
pub mod ast;
mod columnar;
pub mod csv;
pub mod decompress;
pub mod engine;
pub mod error;
pub mod eval;
pub mod eventstream;
pub mod json;
pub mod jsonscan;
pub mod lexer;
pub mod like;
pub mod output;
pub mod params;
pub mod parquet;
pub mod parser;
pub mod plan;
pub mod time;
pub mod value;
pub mod vector;
#[cfg(test)]
mod vector_tests;

pub use engine::{Engine, Step};
pub use error::{Code, SelectError};
pub use params::SelectParams;
pub use time::Ts;
