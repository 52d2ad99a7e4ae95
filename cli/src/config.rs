//! `protopay.toml`: the engine's [`Config`] keys at the top level, and a `[serve]` table for
//! the sidecar. Secrets come from the environment, which overrides the file:
//!
//! | variable | what |
//! |---|---|
//! | `PROTOPAY_KEY` | the MD5 key (`key`) |
//! | `PROTOPAY_PREVIOUS_KEYS` | keys still accepted during a rotation, comma-separated (`previous_keys`) |
//! | `PROTOPAY_API_TOKEN` | the `operate` API token (required) |
//! | `PROTOPAY_API_READ_TOKEN` | the `read` API token (optional) |
//! | `PROTOPAY_WEBHOOK_SECRET` | the webhook's HMAC secret (`[serve.webhook] secret`) |
//!
//! Unknown keys are refused with their name, in both parts: a misspelt setting is an error,
//! never a default silently used.
//!
//! ```toml
//! app_id = "APP001"
//! base_url = "https://lft.example"
//! callback_base_url = "https://me.example/protopay/notify"
//! poll = { grace_ms = 120000 }
//!
//! [serve]
//! listen = "0.0.0.0:8080"
//! store = "/var/lib/protopay"   # a sled directory, or postgres://user@host/db
//!
//! [serve.webhook]               # optional: push events instead of long-polling
//! url = "https://me.example/protopay-events"
//!
//! [[serve.operators]]           # optional: people, by the SHA-256 of their token
//! name = "li.lei"
//! role = "operate"              # or "read"
//! token_sha256 = "…"            # printf %s "$TOKEN" | sha256sum
//! ```

use crate::CliError;
use protopay::Config;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Where the engine keeps its data.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum Store {
    /// A sled directory (the default: `protopay-data`).
    Sled(PathBuf),
    /// A PostgreSQL URL (`postgres://…`), shared by every instance.
    Postgres {
        /// The URL (may hold a password: never printed).
        url: String,
        /// The schema.
        schema: String,
    },
}

impl std::fmt::Debug for Store {
    /// A PostgreSQL URL may carry a password: only the schema is shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Store::Sled(path) => f.debug_tuple("Sled").field(path).finish(),
            Store::Postgres { schema, .. } => f
                .debug_struct("Postgres")
                .field("schema", schema)
                .finish_non_exhaustive(),
        }
    }
}

/// The `[serve]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeFile {
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default = "default_store")]
    store: String,
    /// The PostgreSQL schema (default `protopay`).
    #[serde(default = "default_schema")]
    schema: String,
    #[serde(default)]
    webhook: Option<WebhookFile>,
    /// Named operators: their decisions are recorded under their names.
    #[serde(default)]
    operators: Vec<OperatorFile>,
    /// Mark the console's session cookie `Secure`: set it when people reach `protopay serve`
    /// over HTTPS (a TLS proxy in front), as they should beyond localhost.
    #[serde(default)]
    secure_cookies: bool,
}

/// `[[serve.operators]]`: a person who may read or operate, by the SHA-256 of their token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct OperatorFile {
    /// Their name, recorded with each decision they make.
    pub name: String,
    /// `read` or `operate`.
    pub role: protopay::api::Role,
    /// The SHA-256 of their token, in hex (`printf %s "$TOKEN" | sha256sum`).
    pub token_sha256: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookFile {
    url: String,
    #[serde(default = "default_consumer")]
    consumer: String,
    #[serde(default)]
    secret: Option<String>,
    #[serde(default = "default_first_retry")]
    first_retry_ms: u64,
    #[serde(default = "default_max_retry")]
    max_retry_ms: u64,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_store() -> String {
    "protopay-data".into()
}
fn default_schema() -> String {
    "protopay".into()
}
fn default_consumer() -> String {
    "webhook".into()
}
fn default_first_retry() -> u64 {
    1_000
}
fn default_max_retry() -> u64 {
    60_000
}

/// Push delivery settings.
#[derive(Debug, Clone)]
pub(crate) struct WebhookSettings {
    /// The host's URL.
    pub url: String,
    /// The consumer whose cursor tracks delivery.
    pub consumer: String,
    /// The HMAC secret.
    pub secret: protopay::Sensitive,
    /// Backoff.
    pub first_retry_ms: u64,
    /// Backoff cap.
    pub max_retry_ms: u64,
}

/// Everything `protopay serve` runs with.
#[derive(Debug)]
pub(crate) struct ServeSettings {
    /// The engine's configuration.
    pub engine: Config,
    /// Where to listen (API, callbacks, health).
    pub listen: SocketAddr,
    /// Where to keep data.
    pub store: Store,
    /// The `operate` token.
    pub operate_token: protopay::Sensitive,
    /// The `read` token.
    pub read_token: Option<protopay::Sensitive>,
    /// Push delivery, when configured.
    pub webhook: Option<WebhookSettings>,
    /// Named operators.
    pub operators: Vec<OperatorFile>,
    /// Whether the console's session cookie is `Secure`.
    pub secure_cookies: bool,
}

/// The settings of `path` for a command that opens the store itself and serves nothing
/// (backup, restore): the API token, which only a server needs, may be unset.
pub(crate) fn load_for_store(path: &Path) -> Result<ServeSettings, CliError> {
    load(path, |name| match std::env::var(name) {
        Ok(value) => Some(value),
        Err(_) if name == "PROTOPAY_API_TOKEN" => Some("unused: this command serves nothing".into()),
        Err(_) => None,
    })
}

/// Read the settings from `path`, with `env` (a variable's value by name) overriding secrets.
pub(crate) fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<ServeSettings, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::ReadConfig {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path, env)
}

/// [`load`] from the file's text.
pub(crate) fn parse(text: &str, path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<ServeSettings, CliError> {
    let bad = |reason: String| CliError::Config {
        path: path.to_owned(),
        reason,
    };
    let mut table: toml::Table = toml::from_str(text).map_err(|e| bad(e.message().to_owned()))?;
    let serve = match table.remove("serve") {
        None => toml::Table::new().into(),
        Some(v) => v,
    };
    if let Some(key) = env("PROTOPAY_KEY") {
        table.insert("key".into(), toml::Value::String(key));
    }
    if let Some(keys) = env("PROTOPAY_PREVIOUS_KEYS") {
        let keys = keys.split(',').map(str::trim).filter(|k| !k.is_empty());
        let keys = keys.map(|k| toml::Value::String(k.to_owned())).collect();
        table.insert("previous_keys".into(), toml::Value::Array(keys));
    }
    let engine: Config = table
        .try_into()
        .map_err(|e: toml::de::Error| bad(e.message().to_owned()))?;
    engine.validate().map_err(|e| bad(e.to_string()))?;
    let serve: ServeFile = serve
        .try_into()
        .map_err(|e: toml::de::Error| bad(format!("[serve]: {}", e.message())))?;
    let operate_token = env("PROTOPAY_API_TOKEN").ok_or(CliError::MissingEnv("PROTOPAY_API_TOKEN"))?;
    let store = if serve.store.starts_with("postgres://") || serve.store.starts_with("postgresql://") {
        Store::Postgres {
            url: serve.store,
            schema: serve.schema,
        }
    } else {
        Store::Sled(PathBuf::from(serve.store))
    };
    let webhook = match serve.webhook {
        None => None,
        Some(w) => {
            let secret = env("PROTOPAY_WEBHOOK_SECRET")
                .or(w.secret)
                .ok_or(CliError::MissingEnv("PROTOPAY_WEBHOOK_SECRET"))?;
            Some(WebhookSettings {
                url: w.url,
                consumer: w.consumer,
                secret: protopay::Sensitive::new(secret),
                first_retry_ms: w.first_retry_ms,
                max_retry_ms: w.max_retry_ms,
            })
        }
    };
    Ok(ServeSettings {
        engine,
        listen: serve.listen,
        store,
        operate_token: protopay::Sensitive::new(operate_token),
        read_token: env("PROTOPAY_API_READ_TOKEN").map(protopay::Sensitive::new),
        webhook,
        operators: serve.operators,
        secure_cookies: serve.secure_cookies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use protopay::Md5Key;

    const FILE: &str = r#"
app_id = "APP001"
key = "from-the-file"
base_url = "http://127.0.0.1:8700"
callback_base_url = "http://127.0.0.1:8080/protopay/notify"

[serve]
listen = "127.0.0.1:0"
store = "/tmp/x"
"#;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_environment_overrides_the_key_and_supplies_the_tokens() {
        let s = parse(
            FILE,
            Path::new("p.toml"),
            env(&[("PROTOPAY_KEY", "from-env"), ("PROTOPAY_API_TOKEN", "t")]),
        )
        .unwrap();
        assert_eq!(s.engine.key, Md5Key::new("from-env"));
        assert_eq!(s.store, Store::Sled("/tmp/x".into()));
        assert_eq!(s.operate_token.expose(), "t");
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        for (text, name) in [
            (format!("{FILE}\nlisten_port = 1"), "listen_port"),
            (format!("grace = 1\n{FILE}"), "grace"),
        ] {
            let e = parse(&text, Path::new("p.toml"), env(&[("PROTOPAY_API_TOKEN", "t")])).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    #[test]
    fn a_missing_token_or_key_is_named() {
        let e = parse(FILE, Path::new("p.toml"), env(&[])).unwrap_err();
        assert!(e.to_string().contains("PROTOPAY_API_TOKEN"), "{e}");
        let no_key = FILE.replace("key = \"from-the-file\"\n", "");
        let e = parse(&no_key, Path::new("p.toml"), env(&[("PROTOPAY_API_TOKEN", "t")])).unwrap_err();
        assert!(e.to_string().contains("key"), "{e}");
    }

    #[test]
    fn a_postgres_url_selects_postgres_and_the_key_is_never_shown() {
        let text = FILE.replace("/tmp/x", "postgres://u:pw@db/app");
        let s = parse(&text, Path::new("p.toml"), env(&[("PROTOPAY_API_TOKEN", "t")])).unwrap();
        assert!(matches!(s.store, Store::Postgres { ref schema, .. } if schema == "protopay"));
        let shown = format!("{s:?}");
        assert!(!shown.contains("from-the-file") && !shown.contains("pw"), "{shown}");
    }

    proptest::proptest! {
        /// Whatever the file holds, reading it is a value or a typed error, never a panic,
        /// and no error shows the key.
        #[test]
        fn any_file_is_read_or_refused_without_a_panic(
            text in "(app_id|key|base_url|serve|listen|store|webhook|poll|\\[|\\]|=|\"|[a-z0-9:/._ \n{}-]){0,80}"
        ) {
            let with_key = format!("key = \"secret-md5-key\"\n{text}");
            if let Err(e) = parse(&with_key, Path::new("p.toml"), env(&[("PROTOPAY_API_TOKEN", "t")])) {
                proptest::prop_assert!(!e.to_string().contains("secret-md5-key"));
            }
        }
    }
}
