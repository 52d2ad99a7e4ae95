//! How the operator commands reach an engine: over `/v1` to a running server (`--url`, with
//! the token in `PROTOPAY_API_TOKEN` or `--token`), or — where no process holds the store —
//! by opening it directly from the configuration file and serving the same `/v1` API to
//! themselves on a loopback port. One client either way, so a command behaves the same
//! against a server and against a store.
//!
//! Opening a store directly starts no poller: an operator's command never sends a payment.

use crate::CliError;
use crate::config;
use protopay::Engine;
use protopay::api::{ApiAuth, api_router};
use serde_json::Value;
use std::path::Path;

/// A `/v1` client.
pub(crate) struct Api {
    base: String,
    token: String,
    http: reqwest::Client,
    /// The engine opened directly, shut down (closing the store) when done.
    local: Option<Engine>,
}

impl Api {
    /// A running server.
    pub(crate) fn remote(url: &str, token: String) -> Result<Self, CliError> {
        Ok(Api {
            base: url.trim_end_matches('/').to_owned(),
            token,
            http: reqwest::Client::builder().build().map_err(CliError::Request)?,
            local: None,
        })
    }

    /// The store of the configuration file, opened here.
    pub(crate) async fn local(config_file: &Path) -> Result<Self, CliError> {
        let token = random_token();
        let env = |name: &str| match name {
            "PROTOPAY_API_TOKEN" => Some(token.clone()),
            other => std::env::var(other).ok(),
        };
        let settings = config::load(config_file, env)?;
        let engine = crate::serve::open_engine(&settings.engine, settings.store)
            .await?
            .engine;
        let app = api_router(engine.clone(), ApiAuth::new(&token)?);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|source| CliError::Listen {
                addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| CliError::Listen {
            addr: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            source,
        })?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        let mut api = Api::remote(&format!("http://{addr}"), token)?;
        api.local = Some(engine);
        Ok(api)
    }

    /// `GET path`.
    pub(crate) async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.send(self.http.get(format!("{}{path}", self.base))).await
    }

    /// `POST path` with a JSON body.
    pub(crate) async fn post(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, CliError> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(CliError::Request)?;
        let status = response.status();
        let body: Value = if status == reqwest::StatusCode::NO_CONTENT {
            Value::Null
        } else {
            response.json().await.map_err(CliError::Request)?
        };
        if status.is_success() {
            Ok(body)
        } else {
            Err(CliError::Api {
                status: status.as_u16(),
                code: body["code"].as_str().unwrap_or("unknown").to_owned(),
                message: body["message"].as_str().unwrap_or_default().to_owned(),
            })
        }
    }

    /// Close the store if it was opened here.
    pub(crate) async fn close(self) -> Result<(), CliError> {
        if let Some(engine) = self.local {
            engine.shutdown().await?;
        }
        Ok(())
    }
}

/// A token nobody else can guess for the loopback API of a directly opened store: std's
/// hasher keys are random per process.
fn random_token() -> String {
    use std::hash::{BuildHasher, RandomState};
    let (a, b) = (RandomState::new().hash_one(1u8), RandomState::new().hash_one(2u8));
    format!("local-{a:016x}{b:016x}")
}
