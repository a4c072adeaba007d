//! tessera-node: the server. Reactors, connections, S3 operations, buckets,
//! identities, and the placement of objects on shards.

pub mod body;
pub mod bodybuf;
pub mod acl;
pub mod admin;
pub mod admin_api;
pub mod admin_client;
pub mod authz;
pub mod buckets;
pub mod codec;
pub mod config;
pub mod config_file;
pub mod conn;
pub mod console;
pub mod fsck;
pub mod hotcache;
pub mod iam;
pub mod identity;
pub mod lanes;
pub mod layout;
pub mod lifecycle;
pub mod meta;
pub mod metrics;
pub mod metrics_detail;
pub mod notify;
pub mod metastore;
pub mod response;
pub mod s3;
pub mod server;
pub mod sets;
pub mod sets_open;
pub mod shards;
pub mod stripes;
pub mod stripes_io;
pub mod sse;
pub mod tls;
