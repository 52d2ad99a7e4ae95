//! `protopay serve`: the sidecar. One listener serves the callback receiver (public: callbacks
//! are signed), the `/v1` API (bearer tokens), the operator console (`/console`), `/healthz` (the process is up) and `/readyz`
//! (the engine runs and its store answers). The poller runs beside it, and the webhook
//! pusher when configured.
//!
//! Stopping (SIGTERM or Ctrl-C): the listener stops accepting; the engine refuses new work
//! (`503 shutting_down`: nothing acknowledged, the caller retries elsewhere), lets in-flight
//! commands, callbacks and polls finish their commits, ends long-polls and the poller, and
//! closes the store; the last responses are written; exit 0. Nothing is acknowledged that is
//! not stored, and nothing stored is lost.

use crate::CliError;
use crate::config::{ServeSettings, Store};
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use protopay::api::webhook::Webhook;
use protopay::api::{ApiAuth, api_router};
use protopay::console::{ConsoleOptions, console_router};
use protopay::http::{HttpTransport, callback_router};
use protopay::postgres::{PostgresOptions, PostgresStorage};
use protopay::sled::SledStorage;
use protopay::{Config, Engine};
use std::time::Duration;

/// Run until a stop signal, then stop cleanly.
pub(crate) async fn run(settings: ServeSettings) -> Result<(), CliError> {
    let ServeSettings {
        engine: config,
        listen,
        store,
        operate_token,
        read_token,
        webhook,
        operators,
        secure_cookies,
    } = settings;
    let mut auth = ApiAuth::new(operate_token.expose())?;
    if let Some(read) = &read_token {
        auth = auth.with_read_token(read.expose())?;
    }
    for o in &operators {
        auth = auth.with_operator(&o.name, o.role, &o.token_sha256)?;
    }
    let webhook = match webhook {
        None => None,
        Some(w) => Some(Webhook::new(&w.url, w.secret, &w.consumer)?.retry(
            Duration::from_millis(w.first_retry_ms),
            Duration::from_millis(w.max_retry_ms),
        )),
    };
    let socket = std::net::TcpListener::bind(listen)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|source| CliError::Listen { addr: listen, source })?;
    let addr = socket.local_addr().unwrap_or(listen);
    let listener = |socket: &std::net::TcpListener| {
        socket
            .try_clone()
            .and_then(tokio::net::TcpListener::from_std)
            .map_err(|source| CliError::Listen { addr, source })
    };
    let Some(Opened { engine, sled }) = open_engine_patiently(&config, store, listener(&socket)?).await? else {
        say("protopay stopped before its store answered");
        return Ok(());
    };
    let metrics = install_metrics(engine.clone())?;
    let poller = engine.spawn_poller();
    let options = ConsoleOptions {
        secure_cookies,
        webhook: webhook.clone(),
    };
    let pusher = webhook.map(|w| tokio::spawn(w.run(engine.clone())));
    let app = callback_router(engine.clone())
        .merge(crate::backup::router(sled, auth.clone()))
        .merge(console_router(engine.clone(), auth.clone(), options))
        .merge(api_router(engine.clone(), auth))
        .merge(health(engine.clone()))
        .merge(metrics);
    let listener = listener(&socket)?;
    drop(socket);
    say(&format!("protopay listening on http://{addr}"));

    let (stop_accepting, server) = serve_until(listener, app);
    stop_signal().await;
    tracing::info!("stopping: finishing in-flight work");
    let _ = stop_accepting.send(());
    // Refuses new work, waits for in-flight commits and polls (none starts), ends long-polls
    // and the poller, closes the store.
    let stopping = std::time::Instant::now();
    let engine_stopped = engine.shutdown().await;
    let waited_ms = stopping.elapsed().as_millis();
    poller.shutdown().await;
    if let Some(pusher) = pusher {
        // Safe at any point: delivery is acknowledged only after the host's 2xx.
        pusher.abort();
    }
    let served = server.await;
    engine_stopped?;
    match served {
        Ok(Ok(())) => {}
        Ok(Err(source)) => return Err(CliError::Listen { addr, source }),
        Err(join) => tracing::error!(error = %join, "the HTTP server task failed"),
    }
    say(&format!("protopay stopped (waited {waited_ms} ms for in-flight work)"));
    Ok(())
}

/// Open the engine, retrying with backoff while the store cannot be reached (a database
/// still starting, or down): meanwhile the listener answers `/healthz` and a `/readyz` of 503
/// that says why, and everything else with `503 starting`. One log line when it starts
/// failing, one when it answers. `None` if a stop signal came first; a mistake that waiting
/// cannot fix (credentials, a schema from a newer build) is returned at once.
async fn open_engine_patiently(
    config: &Config,
    store: Store,
    listener: tokio::net::TcpListener,
) -> Result<Option<Opened>, CliError> {
    // Why the store cannot be reached yet: `None` until a try has failed.
    let failing = std::sync::Arc::new(std::sync::Mutex::new(None::<protopay::postgres::Cause>));
    let shown = failing.clone();
    let starting = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .fallback(move || {
            let why = match *shown.lock().unwrap_or_else(|p| p.into_inner()) {
                Some(cause) => format!("starting: PostgreSQL: {cause}"),
                None => "starting".to_owned(),
            };
            async move { (StatusCode::SERVICE_UNAVAILABLE, why) }
        });
    let (opened, server) = serve_until(listener, starting);
    let first_try = std::time::Instant::now();
    let mut wait = Duration::from_millis(500);
    let mut stop = std::pin::pin!(stop_signal());
    let opening = loop {
        match open_engine(config, store.clone()).await {
            Ok(opened) => break Ok(Some(opened)),
            Err(CliError::Postgres(e)) if e.is_transient() => {
                let cause = e.cause();
                if failing
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .replace(cause)
                    .is_none()
                {
                    tracing::warn!(%cause, error = %e, "PostgreSQL cannot be reached; retrying with backoff, /readyz answers 503 meanwhile");
                } else {
                    tracing::debug!(%cause, "PostgreSQL still cannot be reached");
                }
            }
            Err(e) => break Err(e),
        }
        tokio::select! {
            _ = &mut stop => break Ok(None),
            _ = tokio::time::sleep(wait) => {}
        }
        wait = (wait * 2).min(Duration::from_secs(30));
    };
    let _ = opened.send(());
    let _ = server.await;
    if matches!(opening, Ok(Some(_))) && failing.lock().is_ok_and(|f| f.is_some()) {
        tracing::info!(
            after_ms = first_try.elapsed().as_millis() as u64,
            "PostgreSQL answers; starting"
        );
    }
    opening
}

/// Serve `app` on `listener` in the background until the returned sender fires (or is
/// dropped); connections in flight then finish.
fn serve_until(
    listener: tokio::net::TcpListener,
    app: Router,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    (stop, server)
}

/// An engine on its store.
pub(crate) struct Opened {
    pub engine: Engine,
    /// The store, when it is sled: what an online backup copies.
    pub sled: Option<SledStorage>,
}

/// The engine on the configured store, calling the payment system over HTTP. Starts nothing
/// in the background: the caller decides whether it polls.
pub(crate) async fn open_engine(config: &Config, store: Store) -> Result<Opened, CliError> {
    let builder = Engine::builder(config.clone()).transport(HttpTransport::from_config(config)?);
    Ok(match store {
        Store::Sled(path) => {
            let sled = SledStorage::open(path)?;
            Opened {
                engine: builder.storage(sled.clone()).build().await?,
                sled: Some(sled),
            }
        }
        Store::Postgres { url, schema } => {
            let options = PostgresOptions {
                schema,
                ..PostgresOptions::new(url)
            };
            Opened {
                engine: builder.storage(PostgresStorage::open(options).await?).build().await?,
                sled: None,
            }
        }
    })
}

/// Install the Prometheus recorder (the engine records through the `metrics` facade) and
/// the `/metrics` route that renders it, with the store's gauges read at that moment. Public
/// like the health checks: no personal data.
fn install_metrics(engine: Engine) -> Result<Router, CliError> {
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map_err(|e| CliError::Metrics(e.to_string()))?;
    protopay::metrics::describe();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        // Histograms are drained into their summaries here.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    let scrape = move || async move {
        if let Err(e) = engine.refresh_gauges().await {
            // The last values stay; the scrape still answers.
            tracing::warn!(error = %e, "gauges not refreshed for this scrape");
        }
        handle.render()
    };
    Ok(Router::new().route("/metrics", get(scrape)))
}

/// `/healthz`: the process answers. `/readyz`: the engine runs and its store answers.
fn health(engine: Engine) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .with_state(engine)
}

async fn ready(State(engine): State<Engine>) -> (StatusCode, &'static str) {
    if engine.is_shut_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping");
    }
    match engine.protocols(None, 1).await {
        Ok(_) => (StatusCode::OK, "ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "store unavailable")
        }
    }
}

/// SIGTERM (how service managers stop a process) or Ctrl-C.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A line on stdout, flushed (scripts wait for it); a closed stdout is not worth a panic.
fn say(line: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}").and_then(|()| out.flush());
}
