//! The admin listener (`--admin-address`, default 127.0.0.1:9001), served by
//! the same reactors as S3 (each accepts on its own `SO_REUSEPORT` socket):
//!
//! - `GET /health/live`: 200 while the process serves at all;
//! - `GET /health/ready`: 200 when every shard is open and every reactor
//!   accepts, 503 (with the reason) while starting, stopping or degraded;
//! - `GET /metrics`: Prometheus text format (see `metrics`);
//! - `GET /admin/v1/info`: node facts as JSON, SigV4-signed by an admin
//!   (see `authz::admin`); `buckets`, `scrub`, `heal`, `config` likewise
//!   (see `admin_api`);
//! - `/console/`: the web console and its S3 forwarding prefix (see `console`).
//!
//! With `--admin-tls-cert` the listener speaks HTTPS only (`tls`).
//!
//! Health is also answered on the S3 port at `/_tessera/health/live` and
//! `/_tessera/health/ready`: `_tessera` can never be a bucket name (S3 names
//! start with a letter or digit), so no bucket or key is shadowed.

use std::rc::Rc;

use tessera_proto::http::{self, Method, RequestHead};
use tessera_proto::router;
use tessera_proto::sigv4::{self, SigRequest};
use tessera_proto::{S3Error, S3ErrorCode};

use crate::authz;
use crate::conn::{self, Conn};
use crate::metrics::Listener;
use crate::response::Response;
use crate::server::Ctx;

/// Most admin connections per reactor; beyond it new ones are closed at once
/// (a scraper needs one; this listener is for operators, not clients).
pub const MAX_ADMIN_CONNECTIONS_PER_CORE: usize = 64;
/// Health paths on the S3 port.
pub const S3_PORT_LIVE_PATH: &str = "/_tessera/health/live";
pub const S3_PORT_READY_PATH: &str = "/_tessera/health/ready";
/// Admin API paths.
pub const INFO_PATH: &str = "/admin/v1/info";
/// `GET` lists the key service's master keys (names only); `PUT
/// /admin/v1/kms/keys/NAME` creates one (201; 200 when it exists).
/// Cluster membership as this node sees it (`admin:ClusterStatus`).
pub const CLUSTER_PATH: &str = "/admin/v1/cluster";
/// One key of the cluster configuration (Raft): `GET` (`admin:ClusterStatus`,
/// from this node's applied copy), `PUT ?value=V[&expect=VERSION]` and
/// `DELETE` (`admin:ClusterConfig`, committed through the leader).
pub const CLUSTER_CONFIG_PREFIX: &str = "/admin/v1/cluster/config/";
/// `GET ?bucket=B&key=K`: the partition of a key and the node that owns it.
pub const CLUSTER_LOCATE_PATH: &str = "/admin/v1/cluster/locate";
/// `POST ?node=ID`: decommissions a node (`owners::decommission`).
pub const CLUSTER_DECOMMISSION_PATH: &str = "/admin/v1/cluster/decommission";
pub const KMS_KEYS_PATH: &str = "/admin/v1/kms/keys";

/// Accepts admin connections until the reactor ends: during a drain too,
/// so probes see `/health/ready` answer 503 "stopping". The reactor's drain
/// waits for `Ctx::admin_connections` like for S3 ones, so a console upload
/// in flight completes.
pub async fn accept_loop(listener: monoio::net::TcpListener, ctx: Rc<Ctx>) {
    let open = &ctx.admin_connections;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(core = ctx.core, "admin accept: {e}");
                monoio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        if open.get() >= MAX_ADMIN_CONNECTIONS_PER_CORE {
            drop(stream);
            continue;
        }
        open.set(open.get() + 1);
        let ctx = ctx.clone();
        monoio::spawn(async move {
            let conn = match &ctx.shared.admin_tls {
                None => Some(Conn::new(stream)),
                Some(tls) => {
                    let metrics = ctx.shared.metrics.core(ctx.core);
                    Conn::accept_tls(stream, tls.current(), &ctx.next_request_id(), metrics, Listener::Admin).await
                }
            };
            if let Some(conn) = conn {
                serve(&ctx, conn, peer.ip()).await;
            }
            ctx.admin_connections.set(ctx.admin_connections.get() - 1);
        });
    }
}

async fn serve(ctx: &Rc<Ctx>, mut conn: Conn, peer: std::net::IpAddr) {
    let mut served = 0u64;
    loop {
        // A connection idle after a request closes at a stop (as on the S3
        // port); a new one is still answered (probes during a drain).
        let head = match conn::read_head(ctx, &mut conn, served > 0).await {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => {
                let _ = conn::write_response(&mut conn, Response::error(&e, "/", "0"), false, false, false).await;
                return;
            }
        };
        // The console's S3 forwarding prefix: answered like the S3 port (bodies included).
        if let Some(fwd) = crate::console::forwarded(&head) {
            match crate::console::forward(ctx, &fwd, &mut conn, peer).await {
                crate::console::After::Next => continue,
                crate::console::After::Close => return,
                crate::console::After::Linger => return conn::linger(conn).await,
            }
        }
        // Admin requests carry no body: one that does is refused and closed.
        let no_body = matches!(head.framing(), Ok(http::BodyFraming::Length(0)));
        served += 1;
        let resp = if no_body {
            answer(ctx, &head, peer).await
        } else {
            text(400, "admin requests take no body\n")
        };
        // Health answers during a drain, one request per connection.
        let keep = no_body && head.keep_alive() && !ctx.shared.metrics.stopping();
        let is_head = head.method == Method::Head;
        if conn::write_response(&mut conn, resp, is_head, keep, head.minor_version == 0).await.is_err() || !keep {
            return;
        }
    }
}

fn text(status: u16, body: &str) -> Response {
    Response::new(status).header("Content-Type", "text/plain; charset=utf-8").with_body(body.as_bytes().to_vec())
}

fn json(status: u16, v: &serde_json::Value) -> Response {
    let mut body = v.to_string().into_bytes();
    body.push(b'\n');
    Response::new(status).header("Content-Type", "application/json").with_body(body)
}

fn live() -> Response {
    text(200, "live\n")
}

fn ready(ctx: &Ctx) -> Response {
    match ctx.shared.metrics.readiness() {
        Ok(()) => text(200, "ready\n"),
        Err(why) => text(503, &format!("not ready: {why}\n")),
    }
}

/// An admin API answer: authorized for `action`, then `f`'s JSON.
fn api(ctx: &Ctx, head: &RequestHead, peer: std::net::IpAddr, action: &str, f: impl FnOnce() -> serde_json::Value) -> Response {
    match authenticate_admin_for(ctx, head, peer, action) {
        Ok(()) => json(200, &f()),
        Err(e) => json_error(&e),
    }
}

fn json_error(e: &S3Error) -> Response {
    json(e.code.status(), &serde_json::json!({ "error": e.code.as_str(), "message": e.message }))
}

async fn answer(ctx: &Ctx, head: &RequestHead, peer: std::net::IpAddr) -> Response {
    use crate::admin_api::{BUCKETS_PATH, CONFIG_PATH, HEAL_PATH, REPLICATION_PATH, REPLICATION_RESYNC_PATH, SCRUB_PATH};
    let read = matches!(head.method, Method::Get | Method::Head);
    let get = head.method == Method::Get;
    match head.path.as_str() {
        BUCKETS_PATH if get => match authenticate_admin_for(ctx, head, peer, authz::admin::ACTION_DATA_USAGE) {
            Ok(()) => match crate::admin_api::buckets(ctx, &head.query).await {
                Ok(v) => json(200, &v),
                Err(e) => json_error(&e),
            },
            Err(e) => json_error(&e),
        },
        SCRUB_PATH if get => api(ctx, head, peer, authz::admin::ACTION_SCRUB_STATUS, || crate::admin_api::scrub(ctx)),
        HEAL_PATH if get => api(ctx, head, peer, authz::admin::ACTION_HEAL_STATUS, || crate::admin_api::heal(ctx)),
        CONFIG_PATH if get => api(ctx, head, peer, authz::admin::ACTION_GET_CONFIG, || crate::admin_api::config(ctx)),
        CLUSTER_PATH if get => api(ctx, head, peer, authz::admin::ACTION_CLUSTER_STATUS, || {
            ctx.shared.cluster.as_ref().map_or_else(crate::cluster::status_disabled, |c| c.status())
        }),
        CLUSTER_LOCATE_PATH if get => api(ctx, head, peer, authz::admin::ACTION_CLUSTER_STATUS, || locate(ctx, head)),
        REPLICATION_PATH if get => {
            api(ctx, head, peer, authz::admin::ACTION_REPLICATION_STATUS, || crate::admin_api::replication(ctx))
        }
        REPLICATION_RESYNC_PATH if head.method == Method::Post => {
            match authenticate_admin_for(ctx, head, peer, authz::admin::ACTION_REPLICATION_RESYNC) {
                Ok(()) => {
                    let bucket = head.query.split('&').find_map(|kv| kv.strip_prefix("bucket=")).unwrap_or_default();
                    let bucket = percent_encoding::percent_decode_str(bucket).decode_utf8_lossy();
                    match crate::replication::backfill::resync(ctx, &bucket).await {
                        Ok(v) => json(200, &v),
                        Err(e) => json_error(&e),
                    }
                }
                Err(e) => json_error(&e),
            }
        }
        CLUSTER_DECOMMISSION_PATH if head.method == Method::Post => decommission(ctx, head, peer).await,
        p if p.starts_with(CLUSTER_CONFIG_PREFIX) => cluster_config(ctx, head, peer).await,
        BUCKETS_PATH | SCRUB_PATH | HEAL_PATH | CONFIG_PATH | CLUSTER_PATH | CLUSTER_LOCATE_PATH | CLUSTER_DECOMMISSION_PATH
        | REPLICATION_PATH | REPLICATION_RESYNC_PATH => {
            text(405, "method not allowed\n")
        }
        "/health/live" if read => live(),
        "/health/ready" if read => ready(ctx),
        "/metrics" if read => Response::new(200)
            .header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            .with_body({
                let mut m = ctx.shared.metrics.render(&ctx.shards.queue_depths());
                if let Some(l) = &ctx.shared.layout.lanes {
                    l.health.ec.render(&mut m);
                } else if let Some(c) = &ctx.shared.cluster {
                    c.lane_ec.render(&mut m);
                }
                if let Some(c) = &ctx.shared.cluster {
                    c.render_metrics(&mut m);
                }
                m.into_bytes()
            }),
        INFO_PATH if head.method == Method::Get => match authenticate_admin(ctx, head, peer) {
            Ok(()) => json(200, &info(ctx)),
            Err(e) => json(e.code.status(), &serde_json::json!({ "error": e.code.as_str(), "message": e.message })),
        },
        p if p == KMS_KEYS_PATH || p.starts_with(KMS_KEYS_PATH) => kms_keys(ctx, head, peer),
        p if crate::console::is_console_path(p) => crate::console::asset(ctx, head),
        "/health/live" | "/health/ready" | "/metrics" | INFO_PATH => text(405, "method not allowed\n"),
        _ => text(404, "not found\n"),
    }
}

/// `CLUSTER_LOCATE_PATH`: where `(bucket, key)` lives.
fn locate(ctx: &Ctx, head: &RequestHead) -> serde_json::Value {
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
    let (mut bucket, mut key) = (String::new(), String::new());
    for pair in head.query.split('&') {
        match pair.split_once('=') {
            Some(("bucket", v)) => bucket = decode(v),
            Some(("key", v)) => key = decode(v),
            _ => {}
        }
    }
    let partition = crate::layout::partition_of(&bucket, &key);
    let owners = ctx.shared.cluster.as_ref().and_then(|c| c.owners.load_full());
    // The owner heads the partition's set; another node may act for it
    // (`takeover`) and serve it meanwhile.
    let owner = owners.as_ref().and_then(|o| o.layout_owner_of(partition));
    let serving = owners.as_ref().and_then(|o| o.owner_of(partition));
    serde_json::json!({
        "bucket": bucket,
        "key": key,
        "partition": partition,
        "layout_version": owners.as_ref().map(|o| o.layout.version),
        "owner": owner.map(|o| o.id.clone()),
        "owner_s3_address": owner.map(|o| o.s3.to_string()),
        "served_by": serving.map(|o| o.id.clone()),
        "served_by_s3_address": serving.map(|o| o.s3.to_string()),
    })
}

/// `CLUSTER_DECOMMISSION_PATH`: records node `?node=ID`'s decommission
/// (409 with the reason when it cannot be done now). The leader then lays
/// out the other nodes, its keys move to them (`handover`), and it leaves
/// the configuration's membership; `layout.moving` shows the move.
async fn decommission(ctx: &Ctx, head: &RequestHead, peer: std::net::IpAddr) -> Response {
    if let Err(e) = authenticate_admin_for(ctx, head, peer, authz::admin::ACTION_CLUSTER_CONFIG) {
        return json_error(&e);
    }
    let Some(raft) = ctx.shared.cluster.as_ref().and_then(|c| c.raft()) else {
        return json(404, &serde_json::json!({ "error": "NoCluster", "message": "start with --cluster-address" }));
    };
    let node = head.query.split('&').find_map(|kv| kv.strip_prefix("node=")).unwrap_or_default().to_ascii_lowercase();
    if node.len() != 32 || !node.bytes().all(|c| c.is_ascii_hexdigit()) {
        return json(400, &serde_json::json!({ "error": "InvalidArgument", "message": "?node= takes a node id (32 hex digits)" }));
    }
    // With cluster lanes, every other node must be up: the records striped
    // over four keep one block fewer once the node leaves (a node down and
    // not taken over yet is in no record `owners::decommission` reads).
    if let Some((c, o)) = ctx.shared.cluster.as_ref().and_then(|c| Some((c, c.owners.load_full()?))) {
        let alive: std::collections::BTreeSet<String> = c.alive_ids().iter().map(hex::encode).collect();
        let down: Vec<&String> = o.placed.iter().filter(|id| **id != node && !alive.contains(*id)).collect();
        if o.has_lanes() && !down.is_empty() {
            let m = format!("node {} is down; bring it back (or decommission it first) before another node leaves", down[0]);
            return json(409, &serde_json::json!({ "error": "InvalidRequest", "message": m }));
        }
    }
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let cmd = match raft.store().read(|s| crate::owners::decommission(s, &node, now_ms)) {
        Ok(c) => c,
        Err(m) => return json(409, &serde_json::json!({ "error": "InvalidRequest", "message": m })),
    };
    match raft.write(&cmd).await {
        Ok(o) if o.response.ok => {
            tracing::warn!(node = %node, "cluster: a node is decommissioned; its keys move to the others");
            json(200, &serde_json::json!({ "node": node, "decommissioned": true, "index": o.index }))
        }
        Ok(_) => json(409, &serde_json::json!({ "error": "InvalidRequest", "message": "the node is decommissioned already" })),
        Err(e) => json(503, &serde_json::json!({ "error": "ServiceUnavailable", "message": e })),
    }
}

/// `/admin/v1/cluster/config/KEY` (see `CLUSTER_CONFIG_PREFIX`).
async fn cluster_config(ctx: &Ctx, head: &RequestHead, peer: std::net::IpAddr) -> Response {
    use crate::cluster_raft::ClusterRaft;
    let decode = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8().map(|c| c.into_owned());
    let action = match head.method {
        Method::Get | Method::Head => authz::admin::ACTION_CLUSTER_STATUS,
        _ => authz::admin::ACTION_CLUSTER_CONFIG,
    };
    if let Err(e) = authenticate_admin_for(ctx, head, peer, action) {
        return json_error(&e);
    }
    let Some(raft): Option<&std::sync::Arc<ClusterRaft>> = ctx.shared.cluster.as_ref().and_then(|c| c.raft()) else {
        return json(404, &serde_json::json!({ "error": "NoCluster", "message": "start with --cluster-address" }));
    };
    let bad = |m: &str| json(400, &serde_json::json!({ "error": "InvalidArgument", "message": m }));
    let Ok(key) = decode(&head.path[CLUSTER_CONFIG_PREFIX.len()..]) else { return bad("the key is not UTF-8") };
    if key.is_empty() || key.len() > 1024 {
        return bad("a key is 1 to 1024 bytes");
    }
    let mut params = std::collections::HashMap::new();
    for pair in head.query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match (decode(k), decode(v)) {
            (Ok(k), Ok(v)) => params.insert(k, v),
            _ => return bad("the query is not UTF-8"),
        };
    }
    // Bucket records are written by the S3 API only (envelope, Cas, drain).
    if head.method != Method::Get && key.starts_with(crate::buckets::cluster::KEY_PREFIX) {
        return bad("keys under bucket/ are the bucket registry's; use the S3 API");
    }
    // IAM records are written by the IAM API only (sealed secrets, the guard).
    if head.method != Method::Get && key.starts_with(crate::iam::cluster::KEY_PREFIX) {
        return bad("keys under iam/ are the IAM store's; use the IAM API");
    }
    let cmd = match head.method {
        Method::Get => {
            let (applied, v) = raft.store().get(&key);
            return match v {
                Some(v) => json(
                    200,
                    &serde_json::json!({
                        "key": key, "value": String::from_utf8_lossy(&v.value), "version": v.version, "applied_index": applied,
                    }),
                ),
                None => json(404, &serde_json::json!({ "error": "NoSuchKey", "key": key, "applied_index": applied })),
            };
        }
        Method::Put => {
            let Some(value) = params.get("value") else { return bad("PUT takes ?value=") };
            let value = value.clone().into_bytes();
            match params.get("expect").map(|e| e.parse::<u64>()) {
                None => tessera_raft::Command::Put { key: key.clone(), value },
                Some(Ok(expect)) => tessera_raft::Command::Cas { key: key.clone(), expect, value: Some(value) },
                Some(Err(_)) => return bad("expect is a version number"),
            }
        }
        Method::Delete => tessera_raft::Command::Delete { key: key.clone() },
        _ => return text(405, "method not allowed\n"),
    };
    match raft.write(&cmd).await {
        Ok(o) => json(
            if o.response.ok { 200 } else { 409 },
            &serde_json::json!({ "key": key, "ok": o.response.ok, "version": o.response.version, "index": o.index }),
        ),
        Err(e) => json(503, &serde_json::json!({ "error": "ServiceUnavailable", "message": e })),
    }
}

/// Health on the S3 port, for load balancers that probe only it. `None`:
/// not a health request (a virtual-host request for `/_tessera/...` is a
/// key of its bucket, never health).
pub fn s3_port_health(ctx: &Ctx, head: &RequestHead) -> Option<Response> {
    if !matches!(head.method, Method::Get | Method::Head) || !head.path.starts_with("/_tessera/") {
        return None;
    }
    let vhost = router::route(head.method, "/", "", head.headers.get("host"), &ctx.shared.config.vhost_domains)
        .is_ok_and(|r| r.vhost);
    if vhost {
        return None;
    }
    match head.path.as_str() {
        S3_PORT_LIVE_PATH => Some(live()),
        S3_PORT_READY_PATH => Some(ready(ctx)),
        _ => None,
    }
}

/// The key service's master keys. Creating one writes the keys file from
/// the reactor (a rare operator action, not a request path).
fn kms_keys(ctx: &Ctx, head: &RequestHead, peer: std::net::IpAddr) -> Response {
    let err = |e: S3Error| json(e.code.status(), &serde_json::json!({ "error": e.code.as_str(), "message": e.message }));
    if let Err(e) = authenticate_admin_for(ctx, head, peer, authz::admin::ACTION_KMS_KEYS) {
        return err(e);
    }
    let kms = &ctx.shared.kms;
    match (head.method.clone(), head.path.strip_prefix(KMS_KEYS_PATH).unwrap_or_default()) {
        (Method::Get, "") => json(200, &serde_json::json!({ "keys": kms.key_ids() })),
        (Method::Put, name) if name.starts_with('/') => match kms.create_key(&name[1..]) {
            Ok(true) => json(201, &serde_json::json!({ "created": &name[1..] })),
            Ok(false) => json(200, &serde_json::json!({ "exists": &name[1..] })),
            Err(crate::sse::kms::KmsError::InvalidName) => {
                err(S3Error::with_message(S3ErrorCode::InvalidArgument, "invalid key name"))
            }
            Err(crate::sse::kms::KmsError::TooMany) => {
                err(S3Error::with_message(S3ErrorCode::InvalidArgument, "too many keys"))
            }
            Err(e) => {
                tracing::error!("creating a KMS key failed: {e}");
                err(S3Error::new(S3ErrorCode::InternalError))
            }
        },
        _ => text(405, "method not allowed\n"),
    }
}

/// A SigV4 signature (header or presigned) by an identity allowed
/// `admin:ServerInfo`; unsigned requests are refused.
fn authenticate_admin(ctx: &Ctx, head: &RequestHead, peer: std::net::IpAddr) -> Result<(), S3Error> {
    authenticate_admin_for(ctx, head, peer, authz::admin::ACTION_SERVER_INFO)
}

fn authenticate_admin_for(ctx: &Ctx, head: &RequestHead, peer: std::net::IpAddr, action: &str) -> Result<(), S3Error> {
    use authz::principal;
    let shared = &ctx.shared;
    let sig = SigRequest { method: &head.method_raw, path: &head.path, query: &head.query, headers: &head.headers };
    let now = tessera_proto::time::now_unix_secs();
    let iam = shared.iam.snapshot();
    let session = match principal::security_token(head) {
        Some(t) => Some(principal::open_session(shared, &t, now)?),
        None => None,
    };
    let secret_for = |ak: &str| principal::secret_for(shared, &iam, session.as_ref(), ak);
    let auth = sigv4::authenticate_vhost(&sig, None, &shared.config.region, now, &secret_for)?
        .ok_or_else(|| S3Error::with_message(S3ErrorCode::AccessDenied, "the admin API needs a signed request"))?;
    let p = principal::principal_for(shared, iam.clone(), session, &auth.access_key)?;
    authz::admin::authorize(&p, action, peer, now)
}

/// `/admin/v1/info`. Objects and bytes are the shards' index entries and
/// live bytes (current and noncurrent versions, uploads and node metadata
/// included): exact counts of objects would need a scan of every index.
fn info(ctx: &Ctx) -> serde_json::Value {
    use std::sync::atomic::Ordering::Relaxed;
    let shared = &ctx.shared;
    let m = &shared.metrics;
    let dirs: Vec<serde_json::Value> = shared
        .config
        .data_dirs
        .iter()
        .map(|d| {
            let shards: Vec<serde_json::Value> = shared
                .layout
                .shard_dirs
                .iter()
                .enumerate()
                .filter(|(_, sd)| sd.starts_with(d))
                .map(|(i, _)| {
                    let g = &m.shards[i];
                    serde_json::json!({
                        "id": i,
                        "state": g.state().name(),
                        "read_only": g.read_only.load(Relaxed),
                        "entries": g.entries.load(Relaxed),
                        "live_bytes": g.live_bytes.load(Relaxed),
                        "segment_bytes": g.segment_bytes.load(Relaxed),
                        "segments": g.segments.load(Relaxed),
                        "free_bytes": g.free_bytes.load(Relaxed),
                    })
                })
                .collect();
            serde_json::json!({ "path": d.display().to_string(), "shards": shards })
        })
        .collect();
    let entries: u64 = m.shards.iter().map(|g| g.entries.load(Relaxed)).sum();
    let live: u64 = m.shards.iter().map(|g| g.live_bytes.load(Relaxed)).sum();
    let readiness = m.readiness();
    serde_json::json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": m.started.elapsed().as_secs(),
        "started_unix_seconds": m.started_unix_secs,
        "region": shared.config.region,
        "threads": shared.config.threads,
        "ready": readiness.is_ok(),
        "not_ready_reason": readiness.err(),
        "buckets": shared.buckets.count(),
        "objects": entries,
        "bytes": live,
        "data_dirs": dirs,
    })
}
