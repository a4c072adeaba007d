//! tessera-proto: the S3 protocol without I/O.
//!
//! Everything here takes bytes and returns decisions: HTTP/1.1 heads and body
//! framing, SigV4, aws-chunked, routing to a typed operation, XML bodies, S3
//! errors and checksums. No runtime, no sockets, no files.

pub mod aws_chunked;
pub mod checksum;
pub mod cors;
pub mod error;
pub mod form;
pub mod headers;
pub mod http;
pub mod lifecycle;
pub mod md5x;
pub mod notification;
pub mod logging;
pub mod post_policy;
pub mod replication;
pub mod rfc2047;
pub mod router;
pub mod sigv2;
pub mod sigv4;
pub mod time;
pub mod xml;
pub mod xml_access;

pub use error::{S3Error, S3ErrorCode, S3Result};
pub use headers::Headers;
