//! `tessera`: one binary per node.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use tessera_node::config::Config;

#[global_allocator]
static GLOBAL: tessera_node::alloc::Allocator = tessera_node::alloc::Allocator;

#[derive(Parser)]
#[command(name = "tessera", version, about = "S3-compatible object store")]
struct Cli {
    /// Log lines as `text` (ANSI colours only on a terminal) or `json`
    /// (one object per line, for log collectors).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TESSERA_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs go to stderr, filtered by `TESSERA_LOG` (default `info`). Colour
/// codes only when stderr is a terminal: in a file or a journal they are noise.
fn init_logging(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TESSERA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().with_current_span(false).init(),
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

/// Environment variables that are not a flag's (those are listed with
/// their flag as `[env: ...]`).
const ENVIRONMENT_HELP: &str = "\
Environment:
  TESSERA_ACCESS_KEY, TESSERA_SECRET_KEY  root credentials (both or neither); without them
                                          the ones kept in the data dirs, generated at
                                          first start
  TESSERA_ROOT_USER_ID, TESSERA_ROOT_DISPLAY_NAME  the root account's id and display name
  TESSERA_MASTER_KEY                      SSE master key (base64 of 32 bytes); default:
                                          sse-master.key in the data dirs
  TESSERA_CLUSTER_SECRET                  the secret every node of a cluster shares (>= 16
                                          bytes), keying their traffic; never an S3 credential
  TESSERA_THP=1                           keep transparent huge pages (off by default: first
                                          touches of fresh 2 MiB pages stall the reactors)
  TESSERA_LOG                             log filter (default `info`; e.g. `debug`,
                                          `tessera_node=debug,info`)

Signals: SIGTERM/SIGINT drain and stop; SIGHUP reloads the TLS certificates and the users file
(a change of those files, seen within 2 s, does too).";

#[derive(Subcommand)]
enum Command {
    /// Start a node serving the S3 API.
    #[command(after_help = ENVIRONMENT_HELP)]
    Server {
        /// TOML file of settings named as these flags (`address = "..."`,
        /// `tls-cert = "..."`, `data-dirs = ["...", ...]`); flags and their
        /// environment variables override it.
        #[arg(long, env = "TESSERA_CONFIG")]
        config: Option<PathBuf>,
        /// Address to listen on (port 0 picks a free port).
        #[arg(long, default_value = "127.0.0.1:9000", env = "TESSERA_ADDRESS")]
        address: String,
        /// Admin listener (health, metrics, admin API), or `off`.
        #[arg(long, default_value = "127.0.0.1:9001", env = "TESSERA_ADMIN_ADDRESS")]
        admin_address: String,
        /// Reactor threads, one per core (default: all cores).
        #[arg(long, env = "TESSERA_THREADS")]
        threads: Option<usize>,
        /// Users file: `<access_key> <secret_key> <user_id> <display name>` per line.
        #[arg(long, env = "TESSERA_USERS_FILE")]
        users: Option<PathBuf>,
        /// Base domains for virtual-host-style requests (`bucket.DOMAIN`).
        #[arg(long = "domain", default_value = "localhost")]
        domains: Vec<String>,
        /// Region reported by GetBucketLocation and accepted in signatures.
        #[arg(long, default_value = "us-east-1", env = "TESSERA_REGION")]
        region: String,
        /// Shards per data dir, fixed when the dir is first formatted
        /// (default: enough for every reactor to own one: the reactors
        /// divided by the data dirs, or by the erasure sets with
        /// --erasure, rounded up).
        #[arg(long)]
        shards_per_disk: Option<u32>,
        /// Format fresh data dirs (2 or more) as one erasure set (format 2):
        /// a lane's shards on every dir, writes acknowledged at the write
        /// quorum, serving with up to the parity count of dirs missing.
        /// Opt-in; without it fresh dirs get format 1.
        #[arg(long)]
        erasure: bool,
        /// Parity disks of the erasure set (with --erasure; default: 1 of
        /// 2-3 dirs, 2 of 4-5, 3 of 6-7, 4 of 8 and more).
        #[arg(long, requires = "erasure")]
        parity: Option<usize>,
        /// Format 2: rebuild rate of a healing disk (bytes written plus
        /// bytes read back to verify, per second, over all cores; e.g.
        /// 256MiB; 0 = unthrottled).
        #[arg(long, default_value = "256MiB", value_parser = tessera_node::config::parse_size, env = "TESSERA_HEAL_RATE")]
        heal_bytes_per_sec: u64,
        /// Most buckets one user may own (CreateBucket then answers TooManyBuckets).
        #[arg(long, default_value_t = 10_000, env = "TESSERA_MAX_BUCKETS_PER_USER")]
        max_buckets_per_user: usize,
        /// TEST ONLY: smallest multipart part (except the last) in bytes,
        /// instead of S3's 5 MiB, so tests can build 10,000-part objects.
        /// Never set it in production: clients expect S3's limit.
        #[arg(long, env = "TESSERA_TEST_MIN_PART_BYTES", hide_short_help = true)]
        test_min_part_bytes: Option<u64>,
        /// TEST ONLY: how often access-log objects are delivered, in
        /// milliseconds, instead of every five minutes, so tests can read
        /// them quickly. Never set it in production.
        #[arg(long, env = "TESSERA_TEST_ACCESS_LOG_INTERVAL_MS", hide_short_help = true)]
        test_access_log_interval_ms: Option<u64>,
        /// Size of a log segment (e.g. 1GiB, 64MiB); smaller ones roll and
        /// get compacted sooner (tests use small ones).
        #[arg(long, default_value = "1GiB", value_parser = tessera_node::config::parse_size, env = "TESSERA_SEGMENT_SIZE")]
        segment_size: u64,
        /// How a write of the log becomes durable: `dsync` opens the
        /// segments O_DSYNC, so each write is on stable storage when it
        /// completes; `fdatasync` writes plainly and syncs after a batch
        /// of writes (group commit). Both acknowledge only durable writes.
        #[arg(long, default_value = "fdatasync", value_parser = ["fdatasync", "dsync"], env = "TESSERA_SYNC_MODE")]
        sync_mode: String,
        /// Free space kept on each disk for deletes and compaction: new data
        /// is refused (507 XTesseraStorageFull) below it. Default: 2% of the
        /// disk, at least 64MiB and at most 4GiB.
        #[arg(long, value_parser = tessera_node::config::parse_size, env = "TESSERA_RESERVE")]
        reserve: Option<u64>,
        /// Retired segment files each shard keeps to start new segments
        /// in (their blocks are written already, so the log's syncs there
        /// commit no block allocation: faster large writes). Each holds a
        /// segment's space while kept; only kept while the disk has room.
        #[arg(long, default_value_t = 2, env = "TESSERA_SPARE_SEGMENTS")]
        spare_segments: usize,
        /// Memory for the hot-object cache of the whole node (e.g. 256MiB,
        /// 2GiB), split evenly over the reactors: GETs of small objects read
        /// often are served from memory instead of the disk. 0 turns it off.
        #[arg(long, default_value = "256MiB", value_parser = tessera_node::config::parse_size, env = "TESSERA_CACHE_SIZE")]
        cache_size: u64,
        /// Largest object the hot-object cache takes (e.g. 1MiB).
        #[arg(long, default_value = "1MiB", value_parser = tessera_node::config::parse_size, env = "TESSERA_CACHE_MAX_OBJECT")]
        cache_max_object: u64,
        /// TEST ONLY: shortest STS session in seconds, instead of AWS's 900,
        /// so tests can see temporary credentials expire. Never set it in
        /// production.
        #[arg(long, env = "TESSERA_TEST_MIN_SESSION_SECS", hide_short_help = true)]
        test_min_session_secs: Option<u32>,
        /// TEST ONLY: length of a lifecycle "day" in seconds (lifecycle
        /// rules count days of this length; s3-tests' lc_debug_interval).
        /// Never set it in production.
        #[arg(long, default_value_t = 86_400, env = "TESSERA_LIFECYCLE_DAY_SECS", hide_short_help = true)]
        lifecycle_day_secs: u64,
        /// Most lifecycle actions (expirations, removals, aborts,
        /// transitions) a pass takes per second on each shard, so a day's
        /// worth of expirations never crowds out requests.
        #[arg(long, default_value_t = 1000, env = "TESSERA_LIFECYCLE_ACTIONS_PER_SEC")]
        lifecycle_actions_per_sec: u32,
        /// MEASUREMENT ONLY: lifecycle passes walk every object, version and
        /// upload as before the age index, to compare the two.
        #[arg(long, env = "TESSERA_LIFECYCLE_FULL_WALK", hide = true)]
        lifecycle_full_walk: bool,
        /// TEST ONLY: replicated versions larger than this are streamed to
        /// the remote instead of read whole (default 8 MiB), so a test
        /// exercises streaming without a huge object.
        #[arg(long, env = "TESSERA_TEST_REPLICATION_WHOLE_BODY_MAX_BYTES", hide = true)]
        test_replication_whole_body_max_bytes: Option<u64>,
        /// TEST ONLY: replicated versions larger than this are sent as a
        /// multipart upload (default 5 GiB, a single PUT's limit), in parts
        /// of this size (at least 5 MiB) when the source's own parts cannot
        /// be reused, so a test exercises multipart replication without a
        /// huge object.
        #[arg(long, env = "TESSERA_TEST_REPLICATION_MULTIPART_THRESHOLD_BYTES", hide = true)]
        test_replication_multipart_threshold_bytes: Option<u64>,
        /// TEST ONLY: versions larger than this go to a tier as a
        /// multipart upload (default 5 GiB, a single PUT's limit), in parts
        /// of this size (at least 5 MiB).
        #[arg(long, env = "TESSERA_TEST_TIER_MULTIPART_THRESHOLD_BYTES", hide = true)]
        test_tier_multipart_threshold_bytes: Option<u64>,
        /// TEST ONLY: how long a transition attempt may run before the
        /// worker takes its copy at the tier for a crash's leftover and
        /// deletes it (default one day).
        #[arg(long, env = "TESSERA_TEST_TIER_PENDING_GRACE_MS", hide = true)]
        test_tier_pending_grace_ms: Option<u64>,
        /// TEST ONLY: abort the process right after a transition wrote its
        /// copy at the tier, before the version becomes a stub.
        #[arg(long, env = "TESSERA_TEST_TIER_ABORT_AFTER_PUT", hide = true)]
        test_tier_abort_after_put: bool,
        /// TEST ONLY: first wait before a version the replication target
        /// refused is sent again (default 60,000; it grows fourfold).
        #[arg(long, env = "TESSERA_TEST_REPLICATION_FAILED_RETRY_MS", hide = true)]
        test_replication_failed_retry_ms: Option<u64>,
        /// The node key file (sealing IAM secrets at rest and STS session
        /// tokens); default `node.key` in the data dirs (a copy in each),
        /// created 0600 at first start. Keep it elsewhere than the data for a copy of the
        /// data alone to hold no usable secret.
        #[arg(long, env = "TESSERA_KEY_FILE")]
        key_file: Option<PathBuf>,
        /// A master key of the built-in key service (SSE-KMS), by name;
        /// repeatable. Its key material is generated at the first start
        /// that names it and kept sealed under the node master key
        /// (`TESSERA_MASTER_KEY`, else `sse-master.key` in the data dirs).
        #[arg(long = "kms-key")]
        kms_keys: Vec<String>,
        /// PEM certificate chain of the S3 listener, which then speaks
        /// HTTPS only (TLS 1.3 and 1.2); needs --tls-key. SIGHUP reloads it.
        #[arg(long, env = "TESSERA_TLS_CERT")]
        tls_cert: Option<PathBuf>,
        /// PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
        #[arg(long, env = "TESSERA_TLS_KEY")]
        tls_key: Option<PathBuf>,
        /// PEM certificate chain of the admin listener (health, metrics,
        /// admin API, console), which then speaks HTTPS only; needs
        /// --admin-tls-key. May be the same files as --tls-cert/--tls-key.
        /// Reloaded like them.
        #[arg(long, env = "TESSERA_ADMIN_TLS_CERT")]
        admin_tls_cert: Option<PathBuf>,
        /// PEM private key of --admin-tls-cert.
        #[arg(long, env = "TESSERA_ADMIN_TLS_KEY")]
        admin_tls_key: Option<PathBuf>,
        /// A bucket notification target: `ID=URL` (http or https), events
        /// POSTed as AWS's JSON; options after the URL, comma separated:
        /// `auth-token=T` or `auth-token-file=PATH` (sent as
        /// `Authorization: Bearer T`), `ca-file=PATH`. Bucket
        /// configurations name it `arn:tessera:sqs::ID:webhook`. Repeatable.
        #[arg(long = "notify-webhook", value_parser = tessera_node::notify::parse_webhook_spec)]
        notify_webhooks: Vec<tessera_node::notify::WebhookSpec>,
        /// This node's cluster address (UDP gossip and TCP RPC, host:port
        /// other nodes reach it at): the node joins a cluster, which places
        /// each object on one owner and spreads it over the owner's lane.
        /// Needs the cluster secret (TESSERA_CLUSTER_SECRET or
        /// --cluster-secret-file).
        #[arg(long, env = "TESSERA_CLUSTER_ADDRESS")]
        cluster_address: Option<String>,
        /// This node's zone (a rack, a room, a site: the nodes that may fail
        /// together). Past four nodes each lane spans as many zones as it
        /// can, at most two of its four nodes in one zone when there are
        /// two zones or more.
        #[arg(long, env = "TESSERA_ZONE", requires = "cluster_address")]
        zone: Option<String>,
        /// A member's cluster address to join through (repeatable; the
        /// first node of a cluster starts without it).
        #[arg(long = "join", requires = "cluster_address")]
        join: Vec<String>,
        /// File holding the cluster secret (at least 16 bytes; instead of
        /// TESSERA_CLUSTER_SECRET).
        #[arg(long, env = "TESSERA_CLUSTER_SECRET_FILE")]
        cluster_secret_file: Option<PathBuf>,
        /// A bucket replication remote (an S3 endpoint, e.g. another
        /// tessera): `NAME=http://HOST:PORT,ACCESS_KEY,SECRET_KEY`, options
        /// after, comma separated: `region=R` (default us-east-1),
        /// `secret-file=PATH` (instead of SECRET_KEY). A rule's Destination
        /// `arn:tessera:s3::NAME:BUCKET` names it; `arn:aws:s3:::BUCKET`
        /// means the only target (or the one named `default`). The key
        /// needs s3:ReplicateObject and s3:ReplicateDelete on the remote
        /// bucket. Repeatable.
        #[arg(long = "replication-target", value_parser = tessera_node::replication::parse_target_spec)]
        replication_targets: Vec<tessera_node::replication::TargetSpec>,
        /// A remote storage tier for lifecycle Transition rules:
        /// `CLASS=http://HOST:PORT/BUCKET,ACCESS_KEY,SECRET_KEY`, options
        /// after, comma separated: `region=R` (default us-east-1),
        /// `secret-file=PATH` (instead of SECRET_KEY). CLASS (A-Z 0-9 _,
        /// e.g. COLD) is the StorageClass rules name; BUCKET at the remote
        /// holds the copies (as SOURCE-BUCKET/KEY/VERSION-ID). Repeatable.
        #[arg(long = "tier", value_parser = tessera_node::tier::parse_tier_spec)]
        tiers: Vec<tessera_node::tier::TierSpec>,
        /// Data directories (one per disk); or `data-dirs` in --config.
        data_dirs: Vec<PathBuf>,
    },
    /// Call a running node's admin API (on its admin listener).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Check a stopped node's data dirs: every shard's log, records and
    /// checkpoints, the bucket registry copies, orphaned objects. Exits 0
    /// when clean, 1 when it found problems, 2 when it could not check.
    Fsck {
        /// Drop what was never acknowledged (torn log tails) and move damaged
        /// checkpoints aside. Never deletes acknowledged data.
        #[arg(long)]
        repair: bool,
        /// The node's data directories, all of them.
        #[arg(required = true)]
        data_dirs: Vec<PathBuf>,
    },
}

/// Where the admin listener is and who calls it (every `admin` subcommand).
#[derive(clap::Args)]
struct AdminTarget {
    /// The node's admin listener (`https://` when it has --admin-tls-cert).
    #[arg(long, default_value = "http://127.0.0.1:9001", env = "TESSERA_ADMIN_ENDPOINT")]
    endpoint: String,
    /// Access key of the node's root or of an IAM identity allowed the
    /// subcommand's `admin:*` action.
    #[arg(long, env = "AWS_ACCESS_KEY_ID")]
    access_key: String,
    #[arg(long, env = "AWS_SECRET_ACCESS_KEY", hide_env_values = true)]
    secret_key: String,
    #[arg(long, default_value = "us-east-1", env = "AWS_DEFAULT_REGION")]
    region: String,
    /// PEM CA certificate(s) to trust for an https:// endpoint (default:
    /// the system's roots).
    #[arg(long, env = "TESSERA_ADMIN_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Version, uptime, data dirs and shard states, buckets, objects, bytes
    /// (`admin:ServerInfo`).
    Info(AdminTarget),
    /// Objects and bytes per bucket, counted by a bounded index scan
    /// (`admin:DataUsageInfo`).
    Buckets {
        #[command(flatten)]
        target: AdminTarget,
        /// Only this bucket.
        #[arg(long)]
        bucket: Option<String>,
    },
    /// Scrub and compaction progress per shard (`admin:ScrubStatus`).
    Scrub(AdminTarget),
    /// Disks' state and healing (`admin:HealStatus`).
    Heal(AdminTarget),
    /// The settings in effect, secrets excluded (`admin:GetConfig`).
    Config(AdminTarget),
    /// Cluster members and their state as this node sees them
    /// (`admin:ClusterStatus`).
    Cluster(AdminTarget),
    /// Decommissions a node of the cluster: its keys move to the others
    /// and it leaves the configuration; stop it once `tessera admin
    /// cluster` shows no move (`admin:ClusterConfig`).
    Decommission {
        #[command(flatten)]
        target: AdminTarget,
        /// The node's id (`node.id` in `tessera admin cluster`).
        #[arg(long)]
        node: String,
    },
    /// The bucket replication backlog: pending entries and bytes, lag,
    /// failures, backfill (`admin:ReplicationStatus`).
    Replication(AdminTarget),
    /// Queues a bucket's FAILED replication versions again
    /// (`admin:ReplicationResync`).
    ReplicationResync {
        #[command(flatten)]
        target: AdminTarget,
        #[arg(long)]
        bucket: String,
    },
}

fn admin(command: AdminCommand) -> ExitCode {
    use tessera_node::{admin, admin_api};
    let mut method = "GET";
    let (target, path, query) = match command {
        AdminCommand::Info(t) => (t, admin::INFO_PATH, String::new()),
        AdminCommand::Replication(t) => (t, admin_api::REPLICATION_PATH, String::new()),
        AdminCommand::ReplicationResync { target, bucket } => {
            method = "POST";
            let q = format!("bucket={}", percent_encoding::utf8_percent_encode(&bucket, percent_encoding::NON_ALPHANUMERIC));
            (target, admin_api::REPLICATION_RESYNC_PATH, q)
        }
        AdminCommand::Buckets { target, bucket } => {
            let q = bucket.map_or_else(String::new, |b| {
                format!("bucket={}", percent_encoding::utf8_percent_encode(&b, percent_encoding::NON_ALPHANUMERIC))
            });
            (target, admin_api::BUCKETS_PATH, q)
        }
        AdminCommand::Scrub(t) => (t, admin_api::SCRUB_PATH, String::new()),
        AdminCommand::Heal(t) => (t, admin_api::HEAL_PATH, String::new()),
        AdminCommand::Config(t) => (t, admin_api::CONFIG_PATH, String::new()),
        AdminCommand::Cluster(t) => (t, admin::CLUSTER_PATH, String::new()),
        AdminCommand::Decommission { target, node } => {
            method = "POST";
            let q = format!("node={}", percent_encoding::utf8_percent_encode(&node, percent_encoding::NON_ALPHANUMERIC));
            (target, admin::CLUSTER_DECOMMISSION_PATH, q)
        }
    };
    let AdminTarget { endpoint, access_key, secret_key, region, ca_cert } = target;
    let prepared = tessera_node::admin_client::authority_of(&endpoint).and_then(|(authority, https)| {
        let tls = if https { Some(tessera_node::admin_client::tls_config(ca_cert.as_deref())?) } else { None };
        Ok((authority, tls))
    });
    let (authority, tls) = match prepared {
        Ok(x) => x,
        Err(e) => {
            eprintln!("tessera admin: {e}");
            return ExitCode::from(2);
        }
    };
    let client = tessera_node::admin_client::AdminClient { authority, access_key, secret_key, region, tls };
    match client.call(method, path, &query) {
        Ok((200, body)) => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!("tessera admin: HTTP {status}: {}", body.trim_end());
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("tessera admin: {e}");
            ExitCode::from(2)
        }
    }
}

/// Parses the command line; with `server --config FILE`, again with the
/// file's settings added as the flags they name (see `config_file`).
fn parse_cli() -> Result<Cli, String> {
    use clap::parser::ValueSource;
    use tessera_node::config_file::{self, Setting, DATA_DIRS_KEY};
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut cmd = Cli::command();
    let matches = cmd.clone().get_matches_from(&args);
    let Some(("server", sub)) = matches.subcommand() else {
        return Cli::from_arg_matches(&matches).map_err(|e| e.to_string());
    };
    let Some(path) = sub.get_one::<PathBuf>("config") else {
        return Cli::from_arg_matches(&matches).map_err(|e| e.to_string());
    };
    let table = config_file::read(path)?;
    cmd.build();
    let server = cmd.find_subcommand("server").ok_or("no server subcommand")?;
    let settings: Vec<Setting> = server
        .get_arguments()
        .filter(|a| a.get_id() != "config" && matches!(a.get_action(), clap::ArgAction::Set | clap::ArgAction::Append))
        .map(|a| {
            let id = a.get_id().as_str();
            // Globals (--log-format) are propagated into the subcommand's matches.
            let source = sub.value_source(id);
            Setting {
                key: a.get_long().map_or_else(|| DATA_DIRS_KEY.to_string(), str::to_string),
                positional: a.get_long().is_none(),
                given: matches!(source, Some(ValueSource::CommandLine | ValueSource::EnvVariable)),
            }
        })
        .collect();
    let (flags, dirs) = config_file::to_args(&table, &settings, path)?;
    // Flags go before a `--` the command line may hold; data dirs last.
    let at = args.iter().position(|a| a == "--").unwrap_or(args.len());
    let had_dash_dash = at < args.len();
    args.splice(at..at, flags.into_iter().map(Into::into));
    if !dirs.is_empty() && !had_dash_dash {
        args.push("--".into());
    }
    args.extend(dirs.into_iter().map(Into::into));
    let matches = cmd.try_get_matches_from(&args).map_err(|e| format!("in --config {}: {e}", path.display()))?;
    Cli::from_arg_matches(&matches).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    // Before the heap grows: see `tessera_node::thp` (a GET of large
    // objects from disk ran 10-20x slower while the heap grew on huge pages).
    let thp = tessera_node::thp::disable_unless_asked();
    // Files and dirs this process creates (segments, format and lock files)
    // are for its own user only: they hold every object and the credentials.
    // SAFETY: umask only sets the process's file mode creation mask.
    unsafe {
        libc::umask(0o077);
    }
    let cli = match parse_cli() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tessera: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(cli.log_format);
    if let Err(e) = thp {
        tracing::warn!(error = %e, "could not turn transparent huge pages off (PR_SET_THP_DISABLE)");
    }
    match cli.command {
        Command::Server {
            address,
            admin_address,
            threads,
            users,
            domains,
            region,
            shards_per_disk,
            erasure,
            parity,
            heal_bytes_per_sec,
            max_buckets_per_user,
            test_min_part_bytes,
            test_access_log_interval_ms,
            segment_size,
            sync_mode,
            reserve,
            spare_segments,
            cache_size,
            cache_max_object,
            test_min_session_secs,
            lifecycle_day_secs,
            lifecycle_actions_per_sec,
            lifecycle_full_walk,
            test_replication_whole_body_max_bytes,
            test_replication_multipart_threshold_bytes,
            test_tier_multipart_threshold_bytes,
            test_tier_pending_grace_ms,
            test_tier_abort_after_put,
            test_replication_failed_retry_ms,
            key_file,
            kms_keys,
            config: _,
            tls_cert,
            tls_key,
            admin_tls_cert,
            admin_tls_key,
            notify_webhooks,
            cluster_address,
            zone,
            join,
            cluster_secret_file,
            replication_targets,
            tiers,
            data_dirs,
        } => {
            let cluster = match tessera_node::cluster::ClusterConfig::from_flags(
                cluster_address.as_deref(),
                &join,
                std::env::var("TESSERA_CLUSTER_SECRET").ok(),
                cluster_secret_file.as_deref(),
            )
            .and_then(|c| c.map(|c| c.with_zone(zone.as_deref())).transpose())
            {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("tessera: {e}");
                    return ExitCode::from(2);
                }
            };
            let threads = threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
                .max(1);
            let admin_address = (admin_address != "off").then_some(admin_address);
            let config = Config {
                address,
                admin_address,
                threads,
                users_file: users,
                key_file,
                kms_keys,
                vhost_domains: domains,
                region,
                shards_per_disk: shards_per_disk
                    .unwrap_or_else(|| tessera_node::config::default_shards_per_disk(threads, data_dirs.len(), erasure)),
                erasure: erasure.then_some(parity),
                heal_bytes_per_sec,
                max_buckets_per_user,
                data_dirs,
                min_part_bytes: test_min_part_bytes.unwrap_or(tessera_node::s3::MIN_PART_BYTES),
                access_log_interval: test_access_log_interval_ms
                    .map_or(tessera_node::s3::logging::DELIVERY_INTERVAL, |ms| std::time::Duration::from_millis(ms.max(1))),
                segment_size_bytes: segment_size,
                dsync: sync_mode == "dsync",
                reserve_bytes: reserve,
                spare_segments,
                min_session_secs: test_min_session_secs.unwrap_or(tessera_node::iam::model::MIN_SESSION_SECS),
                lifecycle_day_secs: lifecycle_day_secs.max(1),
                lifecycle_actions_per_sec: lifecycle_actions_per_sec.max(1),
                lifecycle_full_walk,
                replication_whole_body_max_bytes: test_replication_whole_body_max_bytes
                    .unwrap_or(tessera_node::replication::worker::WHOLE_BODY_MAX_BYTES),
                replication_multipart_threshold_bytes: test_replication_multipart_threshold_bytes
                    .unwrap_or(tessera_node::replication::worker::MULTIPART_THRESHOLD_BYTES)
                    .min(tessera_node::replication::worker::MULTIPART_THRESHOLD_BYTES),
                tier_multipart_threshold_bytes: test_tier_multipart_threshold_bytes
                    .unwrap_or(tessera_node::replication::worker::MULTIPART_THRESHOLD_BYTES)
                    .min(tessera_node::replication::worker::MULTIPART_THRESHOLD_BYTES),
                tier_pending_grace_ms: test_tier_pending_grace_ms.unwrap_or(tessera_node::tier::PENDING_GRACE_MS),
                test_tier_abort_after_put,
                replication_failed_retry_ms: test_replication_failed_retry_ms.unwrap_or(60_000).max(1),
                cache_bytes: cache_size,
                cache_max_object_bytes: cache_max_object,
                tls_cert,
                tls_key,
                admin_tls_cert,
                admin_tls_key,
                notify_webhooks,
                cluster,
                replication_targets,
                tiers,
            };
            match tessera_node::server::run(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("tessera: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Admin { command } => admin(command),
        Command::Fsck { repair, data_dirs } => match tessera_node::fsck::run(&data_dirs, repair) {
            Ok(report) => {
                print!("{}", report.render());
                if report.is_clean() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(1)
                }
            }
            Err(e) => {
                eprintln!("tessera fsck: {e}");
                ExitCode::from(2)
            }
        },
    }
}
