//! Wiring: a [`Config`] in, a running service out. Tests build the same [`Application`] that `main`
//! runs, on port 0 with a temporary data directory.

use crate::config::Config;
use crate::http::{self, AppState};
use crate::ingest::status::Registry;
use crate::ingest::SourceKind;
use crate::store::{self, StoreHandle, Writer};
use actix_web::dev::{Server, ServerHandle};
use actix_web::{middleware, App};
use anyhow::Context;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// A built service: listening, graph loaded, sources started.
pub struct Application {
    port: u16,
    server: Server,
    store: StoreHandle,
    writer: Writer,
    sources: Vec<crate::ingest::Running>,
    cancel: CancellationToken,
}

/// Stops a running [`Application`] from elsewhere (tests, signal handlers).
#[derive(Clone)]
pub struct StopHandle {
    cancel: CancellationToken,
}

impl StopHandle {
    /// Starts a graceful stop, as SIGTERM does.
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

/// How long a stop waits for the sources to commit what they hold.
const SOURCES_STOP: Duration = Duration::from_secs(5);

/// The file that marks a data directory as the demo's own (its posts are made up). `tagflow serve`
/// with no source configured runs the demo only on an empty directory or one holding this file, so
/// that simulated posts never mix into collected or imported ones unless asked for with `--demo`.
pub const DEMO_MARKER: &str = "DEMO";

/// Drops the default demo from the sources of a directory that holds data the demo did not make,
/// saying so; marks an empty directory the demo is about to fill.
fn keep_demo_apart(config: &mut Config, users: usize) -> std::io::Result<()> {
    if config.store_config().database.is_some() {
        // A database is a store set up on purpose, shared by replicas: made-up posts go into it
        // only when asked for.
        if config.sources.demo_by_default {
            config.sources.kinds.retain(|s| *s != SourceKind::Demo);
            log::warn!(
                "sources: none. On a database the demo runs only when asked for (--demo); pass --sources \
                 x|mastodon|bluesky to collect."
            );
        }
        return Ok(());
    }
    let marker = config.data_dir.join(DEMO_MARKER);
    let demo = config.sources.kinds.contains(&SourceKind::Demo);
    if config.sources.demo_by_default && users > 0 && !marker.exists() {
        config.sources.kinds.retain(|s| *s != SourceKind::Demo);
        log::warn!(
            "sources: none. {} holds {users} users that the demo did not make up, so the demo does not run \
             on it by default: serving it unchanged. Pass --demo to add simulated posts anyway, or \
             --sources x|mastodon|bluesky to collect.",
            config.data_dir.display()
        );
    } else if demo && users == 0 && !marker.exists() {
        std::fs::write(
            &marker,
            "The posts in this directory are made up by tagflow's demo source: `tagflow serve` runs the demo \
             here by default. Without this file it would run only when asked for (--demo).\n",
        )?;
    }
    Ok(())
}

impl Application {
    /// Opens the store, loads the graph, binds the listener and starts the sources.
    ///
    /// # Errors
    /// The data directory cannot be opened (held by another process, unreadable), the address
    /// cannot be bound, or a source cannot be configured.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        let store_config = config.store_config();
        // Opening reads the whole graph from disk: keep it off the async workers, on a thread of its
        // own that ends with the load, so that the allocator can take back that thread's heap (the
        // pages sled read while loading): measured, 800 -> 755 MB resident at ten million
        // interactions, where a pooled blocking thread keeps its heap while it idles.
        let (tx, rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("tagflow-load".into())
            .spawn(move || {
                // The receiver is only gone if startup was abandoned: nothing to report to.
                let _ = tx.send(store::open(&store_config));
            })
            .context("cannot start the loading thread")?;
        let (store, writer, load) = rx.await.context("store open task")??;
        let at = match &config.store_config().database {
            Some(db) => db.shown().to_string(),
            None => format!("dir={}", config.data_dir.display()),
        };
        log::info!(
            "store: opened {at} users={} edges={} in {:.2}s",
            load.users,
            load.ties,
            load.elapsed.as_secs_f64()
        );
        let mut config = config;
        keep_demo_apart(&mut config, load.users).context("cannot mark the data directory as the demo's")?;
        let listener = TcpListener::bind((config.host.as_str(), config.port))
            .with_context(|| format!("cannot listen on {}:{}", config.host, config.port))?;
        let port = listener.local_addr()?.port();
        let registry = Arc::new(Registry::default());
        let cancel = CancellationToken::new();
        let sources = crate::ingest::start_sources(&config.sources, &store, &registry, &cancel);
        let ingest = registry.register("ingest");
        ingest.set_state(crate::ingest::status::SourceState::Streaming);
        let limits = http::server::Limits {
            max_connections: config
                .max_connections
                .unwrap_or_else(http::server::Limits::default_max_connections),
            request_timeout: config.request_timeout,
            keep_alive: config.keep_alive,
            workers: config
                .workers
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
            shutdown_timeout: Duration::from_secs(config.shutdown_timeout),
        };
        let connections = http::server::Connections::new(limits.max_connections);
        let state = AppState {
            store: store.clone(),
            sources: registry,
            started: Instant::now(),
            max_body: config.max_body_bytes,
            ingest,
            analytics: crate::analytics::engine::Engine::new(store.graph().clone(), config.analytics_threads)
                .context("cannot start the analytics threads")?,
            access: Arc::new(config.access.clone()),
            connections: connections.clone(),
            rates: Arc::new(http::gate::Rates::new(config.rates)),
            metrics: Arc::new(http::metrics::Metrics::new(store.stats())),
            sampled: Arc::default(),
            degree_orders: Arc::default(),
            path_walks: Arc::default(),
            answers: Arc::default(),
            body_timeout: config.body_timeout,
            track: config.sources.track.clone().into(),
            exports: Arc::new(tokio::sync::Semaphore::new(http::EXPORTS_AT_ONCE)),
            backups: Arc::new(tokio::sync::Semaphore::new(1)),
            streams: Arc::new(tokio::sync::Semaphore::new(http::STREAMS_AT_ONCE)),
            shutdown: cancel.clone(),
        };
        if config.access.remote_writes() {
            log::info!("http: writes need a bearer token ({})", http::auth::ENV_API_TOKEN);
        } else {
            log::warn!(
                "http: writes are accepted from this machine only; set {} (one or more tokens, comma \
                 separated) to accept authenticated writes from elsewhere",
                http::auth::ENV_API_TOKEN
            );
        }
        if config.access.private_reads() {
            log::info!("http: reads need a bearer token ({})", http::auth::ENV_READ_TOKEN);
        }
        log::info!(
            "http: at most {} connections ({} kept for /status)",
            connections.cap(),
            connections.reserve()
        );
        let server = http::server::serve(listener, &limits, connections, move || {
            App::new()
                .wrap(middleware::from_fn(http::cache::answers))
                .wrap(middleware::from_fn(http::gate::guard))
                .wrap(http::security_headers())
                .wrap(middleware::from_fn(http::metrics::record))
                .wrap(middleware::Logger::new("%a \"%r\" %s %b %Dms").exclude("/status").exclude("/metrics"))
                .configure(|cfg| http::configure(cfg, state.clone()))
        })?;
        log::info!("http: listening on {}:{port}", config.host);
        Ok(Application { port, server, store, writer, sources, cancel })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store(&self) -> &StoreHandle {
        &self.store
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle { cancel: self.cancel.clone() }
    }

    /// Serves until SIGTERM, SIGINT or [`StopHandle::stop`], then stops gracefully: stop accepting,
    /// finish in-flight requests, stop the sources (each commits what it has), flush the store.
    ///
    /// # Errors
    /// The HTTP server failed.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application { server, store, writer, sources, cancel, .. } = self;
        let handle: ServerHandle = server.handle();
        let mut server = tokio::spawn(server);
        let stopped_by_server = tokio::select! {
            r = &mut server => Some(r),
            _ = shutdown_signal() => None,
            _ = cancel.cancelled() => None,
        };
        let started = Instant::now();
        log::info!("shutdown: stopping sources and http");
        cancel.cancel();
        let http = async {
            match stopped_by_server {
                Some(r) => r,
                None => {
                    handle.stop(true).await;
                    server.await
                }
            }
        };
        // Sources commit their last batch on cancel: wait for them all at once, under one deadline,
        // while HTTP drains (a stop must fit the 10 s a supervisor grants between SIGTERM and
        // SIGKILL, whatever the number of sources), so that a stuck one cannot hold the exit.
        let deadline = tokio::time::Instant::now() + SOURCES_STOP;
        let sources = futures_util::future::join_all(sources.into_iter().map(|s| s.stop_by(deadline)));
        let (http_result, _) = tokio::join!(http, sources);
        store.close().await;
        // The writer has flushed; wait for the HTTP workers to drop their handles too, so that the
        // data directory is free when this returns (a supervisor may restart us at once).
        let (flushed, released) = tokio::task::spawn_blocking(move || {
            let flushed = writer.join();
            (flushed, store.release(Duration::from_secs(5)))
        })
        .await
        .unwrap_or((Ok(()), false));
        if !released {
            log::warn!("shutdown: some store handles were still held after 5s");
        }
        // A final flush that failed must not look like a clean stop to the supervisor.
        flushed.context("the store's final flush failed")?;
        log::info!("shutdown: store flushed, stopped cleanly in {:.2}s", started.elapsed().as_secs_f64());
        http_result.context("http server task")?.context("http server")?;
        Ok(())
    }
}

/// Resolves on SIGTERM (what Docker, Heroku and systemd send) or SIGINT (Ctrl-C).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => log::info!("shutdown: SIGTERM received"),
                    _ = tokio::signal::ctrl_c() => log::info!("shutdown: SIGINT received"),
                }
            }
            Err(e) => {
                log::warn!("cannot listen for SIGTERM ({e}); only Ctrl-C stops the service");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `tagflow healthcheck`: GET /status on this machine; Ok if it answers 200 within 3 s and reports
/// itself `OK` (not `DEGRADED`: a store that cannot write makes the container unhealthy). Built on
/// std only, so that the container image needs no curl.
///
/// # Errors
/// The service does not answer, not with 200, or reports itself degraded.
pub fn healthcheck(port: u16) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = Duration::from_secs(3);
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connect {addr}"))?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.write_all(b"GET /status HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    // Connection: close, and /status is a few KiB: read it all, bounded.
    let mut answer = Vec::new();
    stream.take(1 << 20).read_to_end(&mut answer)?;
    let code = answer.get(9..12).map(String::from_utf8_lossy).unwrap_or_default();
    if code != "200" {
        anyhow::bail!("GET /status answered {code}");
    }
    let body = answer.windows(4).position(|w| w == b"\r\n\r\n").map_or(&[][..], |i| &answer[i + 4..]);
    let status: serde_json::Value = serde_json::from_slice(body).context("GET /status answered no JSON")?;
    match status["status"].as_str() {
        Some("OK") => Ok(()),
        other => anyhow::bail!(
            "the service reports itself {}: {}",
            other.unwrap_or("unknown"),
            status["store"]["failing"]["message"].as_str().unwrap_or("no cause given")
        ),
    }
}
