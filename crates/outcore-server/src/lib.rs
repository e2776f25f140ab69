//! outcore-server: an OpenAI-compatible HTTP server over the outcore engine.
//!
//! - [`app`] builds the `Router` (testable with tower's `oneshot` or on an ephemeral port).
//! - [`registry`] is the model lifecycle (one map of slots), [`worker`] the per-model batching thread.
//! - [`engine::Engine`] is everything the server needs from a model; `engine::outcore` adapts the real
//!   engine and `engine::fake` is a deterministic stand-in for tests.
//! - [`run`] / [`serve`] bind, serve, and shut down gracefully on SIGTERM/Ctrl-C with a deadline.
#![forbid(unsafe_code)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;

pub mod auth;
pub mod config;
pub mod engine;
pub mod error;
pub mod extract;
pub mod files;
pub mod metrics;
pub mod openai;
pub mod queue;
pub mod registry;
pub mod routes;
pub mod stop;
pub mod worker;

pub use config::{ConfigError, ModelConfig, ServerConfig};
pub use engine::{Engine, Loader};
pub use error::{ApiError, ServerError};
pub use registry::Registry;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    pub http: Arc<metrics::HttpStats>,
    pub api_key: Option<Arc<str>>,
    pub max_body_bytes: usize,
    /// Unix time the server started (the `created` of model objects).
    pub started: u64,
}

impl AppState {
    /// Builds the registry (checking each model against the RAM budget). Inside a tokio runtime
    /// this also starts the idle-unload reaper.
    pub fn new(config: &ServerConfig, loader: Arc<dyn Loader>) -> Result<AppState, ConfigError> {
        let registry = Registry::new(config, loader)?;
        if tokio::runtime::Handle::try_current().is_ok() {
            registry.spawn_reaper();
        }
        Ok(AppState {
            registry,
            http: Arc::default(),
            api_key: config.api_key.as_deref().map(Arc::from),
            max_body_bytes: config.max_body_bytes,
            started: openai::unix_time(),
        })
    }
}

/// Route label for metrics (path parameters folded).
fn route_label(path: &str) -> &'static str {
    match path {
        "/v1/completions" => "/v1/completions",
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/models" => "/v1/models",
        "/health" => "/health",
        "/metrics" => "/metrics",
        "/v1/reload" => "/v1/reload",
        p if p.starts_with("/v1/models/") && p.ends_with("/unload") => "/v1/models/{id}/unload",
        p if p.starts_with("/v1/models/") && p.ends_with("/reload") => "/v1/models/{id}/reload",
        p if p.starts_with("/v1/models/") => "/v1/models/{id}",
        _ => "other",
    }
}

async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let route = route_label(req.uri().path());
    let resp = next.run(req).await;
    state.http.record(route, resp.status().as_u16());
    resp
}

/// The whole HTTP surface.
pub fn app(state: AppState) -> Router {
    use routes::{chat, completions, models, ops};
    Router::new()
        .route("/v1/completions", post(completions::completions))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{id}", get(models::get_one))
        .route("/v1/models/{id}/unload", post(models::unload))
        .route("/v1/models/{id}/reload", post(models::reload))
        .route("/v1/reload", post(models::reload_all))
        .route("/health", get(ops::health))
        .route("/metrics", get(ops::metrics))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::require_key,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Serves on a bound listener until `shutdown` resolves, then drains connections for at most
/// `deadline` and unloads every model.
pub async fn serve_on(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    deadline: Duration,
) -> Result<(), ServerError> {
    let (fired_tx, mut fired_rx) = tokio::sync::watch::channel(false);
    let graceful = async move {
        shutdown.await;
        let _ = fired_tx.send(true);
    };
    let registry = state.registry.clone();
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(graceful);
    let expire = async move {
        let _ = fired_rx.wait_for(|fired| *fired).await;
        tokio::time::sleep(deadline).await;
    };
    tokio::select! {
        r = server => r.map_err(ServerError::Serve)?,
        () = expire => eprintln!("outcore-server: shutdown deadline of {deadline:?} passed; closing open connections"),
    }
    registry.shutdown_all().await;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    eprintln!("outcore-server: shutting down");
}

/// On every `SIGHUP`, reloads the models whose files changed ([`Registry::reload_all`]) and
/// logs what each did. The task ends with the runtime or when the registry is dropped.
#[cfg(unix)]
pub fn spawn_reload_on_sighup(
    registry: &Arc<Registry>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let weak = Arc::downgrade(registry);
    Ok(tokio::spawn(async move {
        while hup.recv().await.is_some() {
            let Some(registry) = weak.upgrade() else {
                return;
            };
            eprintln!("outcore-server: SIGHUP: checking model files");
            for (name, r) in registry.reload_all().await {
                match r {
                    Ok(o) => eprintln!("outcore-server: model '{name}': {}", o.detail()),
                    Err(e) => eprintln!("outcore-server: model '{name}': {}", e.message),
                }
            }
        }
    }))
}

/// Binds `config.host:config.port` and serves until a signal.
pub async fn serve(config: ServerConfig, loader: Arc<dyn Loader>) -> Result<(), ServerError> {
    let state = AppState::new(&config, loader)?;
    let addr = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .map_err(|source| ServerError::Bind {
            addr: addr.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(ServerError::Serve)?;
    for m in state.registry.models() {
        eprintln!(
            "outcore-server: model '{}' ({}): the planner puts it at {:.1} MiB; loads on its first request",
            m.name,
            m.cfg.path.display(),
            m.estimate as f64 / (1u64 << 20) as f64
        );
    }
    let names: Vec<&str> = config.models.keys().map(String::as_str).collect();
    eprintln!(
        "outcore-server: listening on http://{local} (models: {})",
        names.join(", ")
    );
    #[cfg(unix)]
    if let Err(e) = spawn_reload_on_sighup(&state.registry) {
        eprintln!("outcore-server: cannot handle SIGHUP ({e}); use POST /v1/reload instead");
    }
    if config.api_key.is_none() && !local.ip().is_loopback() {
        eprintln!("outcore-server: warning: listening beyond loopback without an api_key");
    }
    serve_on(listener, state, shutdown_signal(), config.shutdown_timeout).await
}

/// The loader for real models (`engine` feature).
#[cfg(feature = "engine")]
pub fn default_loader() -> Result<Arc<dyn Loader>, ServerError> {
    Ok(Arc::new(engine::outcore::OutcoreLoader))
}

/// Without the `engine` feature there is no real loader.
#[cfg(not(feature = "engine"))]
pub fn default_loader() -> Result<Arc<dyn Loader>, ServerError> {
    Err(ServerError::NoEngine)
}

/// Builds a multi-threaded runtime and runs [`serve`] with the real engine until a signal.
pub fn run(config: ServerConfig) -> Result<(), ServerError> {
    config.validate()?;
    let loader = default_loader()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(ServerError::Runtime)?;
    rt.block_on(serve(config, loader))
}
