//! Harness for tessera's integration tests.
//!
//! Every test starts the real `tessera` binary on an ephemeral port with its
//! own temporary data directory ([`Server`]), drives it with `aws-sdk-s3` in
//! its default configuration ([`Server::client`]) or with raw bytes over TCP
//! ([`raw`]), and checks the answers. Nothing is mocked.

pub mod cdp;
pub mod cluster;
pub mod data;
pub mod disk;
pub mod form;
pub mod iam;
pub mod netns;
pub mod pki;
pub mod proxy;
pub mod raw;
pub mod server;
pub mod sign;
pub mod webhook;

pub use data::*;
pub use disk::*;
pub use iam::*;
pub use raw::{RawConn, RawRequest, RawResponse};
pub use server::{binary_path, metric_total, wait_metric_total, with_bucket, Server, ServerOpts};
