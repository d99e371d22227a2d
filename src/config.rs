//! Command line and environment: one typed configuration, validated once.
//!
//! Every setting is a flag with an environment variable twin (`PORT` as Heroku sets it, the rest
//! `TAGFLOW_*`). Credentials are read from the environment only, never from flags, so that they do
//! not show up in `ps` output or shell history.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// Watches a hashtag on X, Mastodon and Bluesky and serves the live graph of who interacts with whom.
#[derive(Debug, Parser)]
#[command(name = "tagflow", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service: REST API plus the configured sources (the demo simulator by default).
    Serve(ServeArgs),
    /// Load files of recorded posts (X API v2 / v1.1 output such as twarc's, Mastodon statuses, Bluesky Jetstream events; NDJSON or JSON) into a data directory.
    Import(ImportArgs),
    /// Analyse a data directory that no service holds: PageRank, communities, components, cores or
    /// bridges, as a table or as JSON.
    Analyze(AnalyzeArgs),
    /// Write the graph of a data directory that no service holds as GEXF, GraphML, CSV or
    /// graphology JSON, with the selection and cuts of `GET /export`.
    Export(ExportArgs),
    /// Exit 0 if the service on this machine answers GET /status (for container health checks).
    Healthcheck(HealthcheckArgs),
    /// Check a data directory that no service holds, without changing it: every snapshot frame,
    /// log record and checksum, against its manifest. Exits non-zero naming any damage.
    Verify(VerifyArgs),
    /// Write a backup of the whole store as of one commit (users, edges, timeline, seen posts, post
    /// records, source cursors): gzipped and checksummed. From a running service (`--url`, its
    /// `GET /backup`) or from a data directory no service holds (`--data-dir`).
    Backup(BackupArgs),
    /// Rebuild a data directory from a backup, exactly; a damaged archive is refused.
    Restore(RestoreArgs),
    /// Move a graph between a data directory and a PostgreSQL database, exactly, either way:
    /// `--from-data-dir DIR --to URL`, or `--from URL --to-data-dir DIR`. The destination must be
    /// empty; no service may hold the source.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["from_data_dir", "from"])))]
pub struct MigrateArgs {
    /// The data directory to copy into the database `--to` names.
    #[arg(long, requires = "to", conflicts_with_all = ["from", "to_data_dir"])]
    pub from_data_dir: Option<PathBuf>,
    /// The database to copy from (`postgres://...`) into `--to-data-dir`.
    #[arg(long, value_parser = parse_database, requires = "to_data_dir")]
    pub from: Option<crate::store::Database>,
    /// The empty database to copy into; by default DATABASE_URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = parse_database)]
    pub to: Option<crate::store::Database>,
    /// The new data directory to copy into (must not exist, or be empty).
    #[arg(long)]
    pub to_data_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("from").required(true).args(["url", "data_dir"])))]
pub struct BackupArgs {
    /// The running service to back up (its `GET /backup` needs an API token: TAGFLOW_API_TOKEN).
    #[arg(long, env = "TAGFLOW_URL")]
    pub url: Option<String>,
    /// The data directory to back up, when no service holds it.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Where to write the archive (written aside, then renamed: never half a file under this name).
    #[arg(long)]
    pub out: PathBuf,
    /// Never show a progress bar (it is shown only on a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("into").required(true).args(["data_dir", "database_url"])))]
pub struct RestoreArgs {
    /// The archive `tagflow backup` or `GET /backup` wrote.
    pub archive: PathBuf,
    /// The new data directory (must not exist, or be empty).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Or an empty PostgreSQL database.
    #[arg(long, value_parser = parse_database)]
    pub database_url: Option<crate::store::Database>,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Data directory to check.
    #[arg(long, env = "TAGFLOW_DATA_DIR", default_value = "tagflow-data")]
    pub data_dir: PathBuf,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Where the graph is kept.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Data directory (created if missing). Held exclusively by one process at a time.
    #[arg(long, env = "TAGFLOW_DATA_DIR", default_value = "tagflow-data")]
    pub data_dir: PathBuf,
    /// sled page cache in MiB. The graph itself lives in memory besides this; keep it small on a
    /// 512 MB dyno.
    #[arg(long, env = "TAGFLOW_CACHE_MB", default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub cache_mb: u64,
    /// Log (in MiB) after which a checkpoint folds it into a new snapshot file, or the last
    /// snapshot's size if larger. Checkpoints run beside the writes; smaller means faster restarts
    /// and more checkpoint work.
    #[arg(long, env = "TAGFLOW_CHECKPOINT_MB", default_value_t = 32, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub checkpoint_mb: u64,
    /// A PostgreSQL database (`postgres://user:password@host:port/db?sslmode=require`) instead of the
    /// data directory: every tagflow on it is a replica of one graph. What Heroku's Postgres add-on
    /// sets.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, value_parser = parse_database)]
    pub database_url: Option<crate::store::Database>,
}

fn parse_database(s: &str) -> Result<crate::store::Database, String> {
    crate::store::Database::parse(s)
}

impl ImportArgs {
    /// `--max-line` in bytes.
    pub(crate) fn max_line_bytes(&self) -> usize {
        (self.max_line * f64::from(1u32 << 20)) as usize
    }
}

fn parse_max_line(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.001..=4096.0).contains(&v) => Ok(v),
        _ => Err(format!("--max-line is in MiB, between 0.001 and 4096, not {s:?}")),
    }
}

impl StoreArgs {
    /// The store's settings these arguments make.
    pub(crate) fn store_config(&self) -> crate::store::StoreConfig {
        let mut c = crate::store::StoreConfig::new(&self.data_dir);
        c.cache_bytes = self.cache_mb << 20;
        c.checkpoint_min_bytes = self.checkpoint_mb << 20;
        c.database = self.database_url.clone();
        c
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Address to listen on.
    #[arg(long, env = "TAGFLOW_HOST", default_value = "0.0.0.0")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
    #[command(flatten)]
    pub sources: crate::ingest::SourcesArgs,
    /// Largest request body accepted, in KiB (`POST /ingest` batches included).
    #[arg(long, env = "TAGFLOW_MAX_BODY_KB", default_value_t = 8_192)]
    pub max_body_kb: usize,
    /// Seconds to finish in-flight requests after SIGTERM before closing them.
    #[arg(long, env = "TAGFLOW_SHUTDOWN_TIMEOUT", default_value_t = 10)]
    pub shutdown_timeout: u64,
    /// Open connections at most (default: the file limit, raised to its maximum, less 256). Past it a
    /// client gets 503 at once; the last few under it answer only /status.
    #[arg(long, env = "TAGFLOW_MAX_CONNECTIONS", value_parser = clap::value_parser!(u64).range(2..))]
    pub max_connections: Option<u64>,
    /// Seconds a request's head may take to arrive (408 after).
    #[arg(long, env = "TAGFLOW_REQUEST_TIMEOUT", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub request_timeout: u64,
    /// Seconds a request's body may take to arrive (408 after).
    #[arg(long, env = "TAGFLOW_BODY_TIMEOUT", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub body_timeout: u64,
    /// Seconds an idle kept-alive connection stays open.
    #[arg(long, env = "TAGFLOW_KEEP_ALIVE", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub keep_alive: u64,
    /// Writes one client may make per second (bursts of ten seconds' worth); 0: unlimited.
    #[arg(long, env = "TAGFLOW_RATE_LIMIT_WRITES", default_value_t = 50)]
    pub rate_limit_writes: u32,
    /// Expensive reads (analyses, paths, /graph, ego networks) one client may make per second
    /// (bursts of ten seconds' worth); 0: unlimited.
    #[arg(long, env = "TAGFLOW_RATE_LIMIT_READS", default_value_t = 5)]
    pub rate_limit_reads: u32,
    /// Reads per second, all clients together, served while the store is taking writes; reads
    /// beyond it wait their turn (at most 100 ms) so that writes keep the cores. `/status` is
    /// never held. 0: no budget.
    #[arg(long, env = "TAGFLOW_READS_WHILE_WRITING", default_value_t = 2_000)]
    pub reads_while_writing: u32,
    /// The service is behind a proxy (Heroku's router, nginx) that appends the client's address to
    /// X-Forwarded-For: rate limits count that address. Without a proxy the header is the client's
    /// own say and is ignored.
    #[arg(long, env = "TAGFLOW_TRUST_PROXY")]
    pub trust_proxy: bool,
    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "TAGFLOW_WORKERS")]
    pub workers: Option<usize>,
    /// Threads for analyses (PageRank, communities, ...). Default: one fewer than the cores (at
    /// least one), so that the store's writer keeps a core while analyses run.
    #[arg(long, env = "TAGFLOW_ANALYTICS_THREADS", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub analytics_threads: Option<u16>,
    /// Host names the service answers to, comma separated (e.g. tagflow.example.org): when set, a
    /// request naming another `Host` is refused (421), which defeats DNS rebinding. localhost,
    /// 127.0.0.1 and [::1] always work.
    #[arg(long, env = "TAGFLOW_PUBLIC_HOST", value_delimiter = ',')]
    pub public_host: Vec<String>,
    /// Web origins whose pages may call the API from a browser (CORS), comma separated, e.g.
    /// https://dash.example.org; `*` for any. Writes from pages of other origins are refused (403).
    #[arg(long, env = "TAGFLOW_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ImportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Files to import (`-` reads standard input).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Payload format; `auto` detects it per record.
    #[arg(long, value_enum, default_value_t = ImportFormat::Auto)]
    pub format: ImportFormat,
    /// Send the posts to a running service's `POST /ingest` instead of opening the data directory.
    #[arg(long, env = "TAGFLOW_URL")]
    pub url: Option<String>,
    /// Posts per group commit.
    #[arg(long, default_value_t = 5_000)]
    pub batch: usize,
    /// Longest record read, in MiB (a line, or a pretty-printed document): longer ones are counted
    /// and skipped without being held in memory.
    #[arg(long, default_value_t = 8.0, value_parser = parse_max_line)]
    pub max_line: f64,
    /// Never show a progress bar (it is shown only on a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportFormat {
    Auto,
    #[value(name = "x-v2")]
    XV2,
    #[value(name = "x-v1")]
    XV1,
    Mastodon,
    Jetstream,
}

impl ImportFormat {
    /// The decoder format, or `None` to detect it per record.
    pub(crate) fn into_format(self) -> Option<crate::ingest::decode::Format> {
        use crate::ingest::decode::Format;
        match self {
            ImportFormat::Auto => None,
            ImportFormat::XV2 => Some(Format::XV2),
            ImportFormat::XV1 => Some(Format::XV1),
            ImportFormat::Mastodon => Some(Format::Mastodon),
            ImportFormat::Jetstream => Some(Format::Jetstream),
        }
    }
}

/// The selection an analysis or an export looks at (as the routes' `kinds`, `since`, `until`,
/// `min_weight`).
#[derive(Debug, Clone, Args)]
pub struct SelectionArgs {
    /// Interaction kinds to count, comma separated (repost, reply, quote, mention, manual).
    #[arg(long)]
    pub kinds: Option<String>,
    /// Count interactions from this time on (unix seconds or RFC 3339).
    #[arg(long)]
    pub since: Option<String>,
    /// Count interactions before this time (unix seconds or RFC 3339).
    #[arg(long)]
    pub until: Option<String>,
    /// Keep an edge only if it carries at least this many selected interactions.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub min_weight: u32,
}

impl SelectionArgs {
    /// The selection, checked as the routes check theirs.
    ///
    /// # Errors
    /// What is wrong with which flag, in a sentence.
    pub fn selection(&self) -> Result<crate::graph::Selection, String> {
        crate::graph::Selection::parse(
            self.kinds.as_deref(),
            self.since.as_deref(),
            self.until.as_deref(),
            self.min_weight,
        )
    }
}

/// How communities are found (as the routes' `algorithm`, `resolution`, `seed`).
#[derive(Debug, Clone, Args)]
pub struct CommunityArgs {
    /// Communities: leiden or louvain.
    #[arg(long, default_value = "leiden")]
    pub algorithm: String,
    /// Communities: the modularity resolution (higher finds smaller communities).
    #[arg(long, default_value_t = 1.0)]
    pub resolution: f64,
    /// Seed of communities and betweenness samples (the same seed gives the same answer).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl CommunityArgs {
    /// The parameters, checked as the routes check theirs.
    ///
    /// # Errors
    /// What is wrong with which flag, in a sentence.
    pub fn params(&self) -> Result<crate::analytics::report::CommunityParams, String> {
        let method = crate::analytics::community::Method::parse(&self.algorithm)
            .ok_or_else(|| format!("--algorithm must be leiden or louvain, not {:?}", self.algorithm))?;
        if !(0.0001..=1000.0).contains(&self.resolution) {
            return Err("--resolution must be from 0.0001 to 1000".into());
        }
        Ok(crate::analytics::report::CommunityParams { method, resolution: self.resolution, seed: self.seed })
    }
}

#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// What to compute.
    #[arg(value_enum)]
    pub analysis: Analysis,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Rows to show (users, communities).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub limit: u64,
    #[command(flatten)]
    pub communities: CommunityArgs,
    /// PageRank damping factor.
    #[arg(long, default_value_t = 0.85)]
    pub damping: f64,
    /// Components: strong instead of weak.
    #[arg(long)]
    pub strong: bool,
    /// Bridges: betweenness samples, the more the closer to exact (default: as many as about 4e9
    /// edge visits allow, at least 32).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub samples: Option<u64>,
    /// Threads to compute on (default: every core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    /// Print the answer as JSON (the HTTP route's body) instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Never show progress (it is shown only on a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// gexf (GEXF 1.3, dynamic), graphml, csv (Gephi's spreadsheet tables) or graphology (JSON).
    #[arg(long, default_value = "gexf")]
    pub format: String,
    /// With --format csv: edges or nodes.
    #[arg(long)]
    pub table: Option<String>,
    /// The file to write (`-`: standard output). Written beside as FILE.partial, then renamed, so
    /// that a failed export leaves no truncated file; gzipped when it ends in `.gz`.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub selection: SelectionArgs,
    /// Keep users with at least this many distinct neighbours (in plus out) in the selection.
    #[arg(long, default_value_t = 0)]
    pub min_degree: u32,
    /// Keep the N users of highest degree.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub top: Option<u64>,
    /// Keep the K-core (users whose core number is at least K).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    pub core: Option<u32>,
    /// Keep the users within --hops of this user (key or @handle).
    #[arg(long)]
    pub ego: Option<String>,
    /// How far from --ego (1 to 3).
    #[arg(long, requires = "ego", value_parser = clap::value_parser!(u32).range(1..=3))]
    pub hops: Option<u32>,
    /// Metrics each user carries, comma separated: pagerank, community, core, component.
    #[arg(long)]
    pub metrics: Option<String>,
    #[command(flatten)]
    pub communities: CommunityArgs,
    /// PageRank damping factor.
    #[arg(long, default_value_t = 0.85)]
    pub damping: f64,
    /// Threads to compute on (default: every core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub threads: Option<u16>,
    /// Never show progress (it is shown only on a terminal anyway).
    #[arg(long)]
    pub quiet: bool,
}

/// An analysis of `tagflow analyze`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Analysis {
    /// Users by PageRank, with their degrees, core and community.
    Pagerank,
    /// Communities (Leiden by default), largest first, with their leaders.
    Communities,
    /// Weak (or, with --strong, strong) components.
    Components,
    /// How many users have each core number.
    Cores,
    /// Users by estimated betweenness, with the communities they reach.
    Bridges,
}

#[derive(Debug, Clone, Args)]
pub struct HealthcheckArgs {
    /// Port of the local service.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,
}

/// Invalid combinations that clap cannot express.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ConfigError {
    #[error(transparent)]
    Sources(#[from] crate::ingest::SourcesError),
}

/// The validated service configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub host: String,
    pub port: u16,
    pub data_dir: PathBuf,
    pub store: crate::store::StoreConfig,
    /// Which sources run, on which terms, with their settings (checked).
    pub sources: crate::ingest::Sources,
    /// Tokens for writes and reads (environment only).
    pub access: crate::http::auth::Access,
    pub max_body_bytes: usize,
    pub shutdown_timeout: u64,
    pub workers: Option<usize>,
    pub rates: crate::http::gate::RateSettings,
    /// `None`: derived from the file limit when the server starts.
    pub max_connections: Option<usize>,
    pub request_timeout: Duration,
    pub body_timeout: Duration,
    pub keep_alive: Duration,
    pub analytics_threads: usize,
}

/// One thread fewer than the cores, at least one.
pub(crate) fn default_analytics_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1))
}

impl Config {
    /// Validates the `serve` arguments.
    ///
    /// # Errors
    /// [`ConfigError`] naming the offending setting.
    pub fn from_args(args: ServeArgs) -> Result<Config, ConfigError> {
        let sources = args.sources.resolve()?;
        Ok(Config {
            host: args.host,
            port: args.port,
            store: args.store.store_config(),
            data_dir: args.store.data_dir,
            sources,
            access: crate::http::auth::Access::from_env()
                .with_hosts(&args.public_host)
                .with_origins(&args.allowed_origins),
            max_body_bytes: args.max_body_kb.saturating_mul(1024).max(1024),
            shutdown_timeout: args.shutdown_timeout,
            workers: args.workers,
            rates: crate::http::gate::RateSettings {
                writes: std::num::NonZeroU32::new(args.rate_limit_writes),
                expensive_reads: std::num::NonZeroU32::new(args.rate_limit_reads),
                reads_while_writing: std::num::NonZeroU32::new(args.reads_while_writing),
                trust_proxy: args.trust_proxy,
            },
            max_connections: args.max_connections.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            request_timeout: Duration::from_secs(args.request_timeout),
            body_timeout: Duration::from_secs(args.body_timeout),
            keep_alive: Duration::from_secs(args.keep_alive),
            analytics_threads: args.analytics_threads.map_or_else(default_analytics_threads, usize::from),
        })
    }

    /// A configuration for tests: port 0 on loopback, no sources, the given data directory.
    pub fn for_tests(data_dir: impl Into<PathBuf>) -> Config {
        use clap::{CommandFactory, FromArgMatches};
        // The defaults, never the developer's environment: no argument reads its `env` variable here
        // (a TAGFLOW_SOURCES or TAGFLOW_MAX_BODY_KB in the shell would change the tests' outcome).
        let command = Cli::command().mut_subcommand("serve", |s| s.mut_args(|a| a.env(None)));
        let matches = command
            .try_get_matches_from([
                "tagflow",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--sources",
                "none",
            ])
            .expect("static test arguments parse");
        let args = Cli::from_arg_matches(&matches).expect("static test arguments parse");
        let Command::Serve(mut serve) = args.command else { unreachable!("serve was parsed") };
        serve.store.data_dir = data_dir.into();
        serve.workers = Some(2);
        let mut config = Config::from_args(serve).expect("test configuration is valid");
        // Nor the secrets it holds: tests that need tokens set them.
        config.sources.x.bearer_token = None;
        config.sources.mastodon.token = None;
        config.access = crate::http::auth::Access::default();
        // Unlimited: tests write as fast as they can; the test of the limits sets them.
        config.rates = crate::http::gate::RateSettings::default();
        config
    }

    pub(crate) fn store_config(&self) -> crate::store::StoreConfig {
        crate::store::StoreConfig { dir: self.data_dir.clone(), ..self.store.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ingest::source::mastodon::MastodonSettings;
    use crate::ingest::source::x::XSettings;
    use crate::ingest::{SourceKind, SourcesError};
    use crate::secret::Secret;

    #[test]
    fn secrets_print_redacted_wherever_they_are() {
        let token = Secret::from("AAAA-very-secret");
        assert_eq!(token.expose(), "AAAA-very-secret");
        let x = XSettings {
            api_url: "https://api.x.com".into(),
            bearer_token: Some(token.clone()),
            stall_timeout: std::time::Duration::from_secs(20),
        };
        let m = MastodonSettings { url: None, streaming_url: None, token: Some(token.clone()) };
        for shown in [format!("{token}"), format!("{token:?}"), format!("{x:?}"), format!("{m:?}")] {
            assert!(!shown.contains("very-secret") && shown.contains("<redacted>"), "{shown}");
        }
    }

    fn serve(args: &[&str]) -> ServeArgs {
        let mut all = vec!["tagflow", "serve"];
        all.extend_from_slice(args);
        match Cli::try_parse_from(all).expect("parses").command {
            Command::Serve(s) => s,
            _ => unreachable!(),
        }
    }

    #[test]
    fn demo_is_the_default_source_and_none_means_none() {
        assert_eq!(Config::from_args(serve(&[])).unwrap().sources.kinds, vec![SourceKind::Demo]);
        assert!(Config::from_args(serve(&["--sources", "none"])).unwrap().sources.kinds.is_empty());
        assert_eq!(
            Config::from_args(serve(&["--sources", "none,demo"])).unwrap_err(),
            ConfigError::Sources(SourcesError::NoneWithOthers)
        );
        assert_eq!(
            Config::from_args(serve(&["--sources", "bluesky", "--demo"])).unwrap().sources.kinds,
            vec![SourceKind::Bluesky, SourceKind::Demo]
        );
    }

    #[test]
    fn absurd_values_are_refused() {
        let refused = |args: &[&str]| match Config::from_args(serve(args)) {
            Err(ConfigError::Sources(e)) => e,
            other => panic!("{args:?} was not refused: {other:?}"),
        };
        assert!(matches!(refused(&["--demo-rate", "0"]), SourcesError::DemoRate(_)));
        assert!(matches!(refused(&["--demo-rate", "NaN"]), SourcesError::DemoRate(_)));
        assert_eq!(refused(&["--track", " , #"]), SourcesError::NoTrack);
        // Every source's settings are checked before anything starts, the same way.
        let bad = refused(&["--sources", "bluesky", "--jetstream-url", "http://example.org/subscribe"]);
        assert!(matches!(bad, SourcesError::InvalidUrl { name: "bluesky", .. }), "{bad}");
        assert!(Cli::try_parse_from(["tagflow", "serve", "--port", "70000"]).is_err());
        assert!(Cli::try_parse_from(["tagflow", "serve", "--cache-mb", "0"]).is_err());
    }

    #[test]
    fn test_configurations_ignore_the_environment() {
        // A variable no other unit test reads, so that setting it races with nothing.
        std::env::set_var("TAGFLOW_REQUEST_TIMEOUT", "3599");
        let config = Config::for_tests("/tmp/unused");
        std::env::remove_var("TAGFLOW_REQUEST_TIMEOUT");
        assert_eq!(config.request_timeout, Duration::from_secs(10), "the default, not the shell's 3599");
    }

    #[test]
    fn track_terms_are_split_and_trimmed() {
        let c = Config::from_args(serve(&["--track", "#rustlang, #rust ,word"])).unwrap();
        assert_eq!(c.sources.track, vec!["#rustlang", "#rust", "word"]);
    }
}
