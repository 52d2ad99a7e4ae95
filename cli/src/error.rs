//! The binary's one error type: what went wrong and what to do, printed on stderr.

use std::path::PathBuf;

/// Why `protopay` stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CliError {
    /// The configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The configuration is invalid: a key unknown or missing, a value out of range.
    #[error("{path}: {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong (names the key; never shows a secret).
        reason: String,
    },
    /// A required environment variable is not set.
    #[error("set {0} in the environment")]
    MissingEnv(&'static str),
    /// The sled store could not be opened.
    #[error(transparent)]
    Sled(#[from] protopay::sled::SledError),
    /// The PostgreSQL store could not be opened.
    #[error(transparent)]
    Postgres(#[from] protopay::postgres::PgError),
    /// The HTTP transport could not be set up (base URL, client).
    #[error(transparent)]
    Http(#[from] protopay::http::HttpError),
    /// The API or the webhook could not be set up (tokens, webhook URL).
    #[error(transparent)]
    ApiSetup(#[from] protopay::api::SetupError),
    /// The engine refused to start or to stop cleanly.
    #[error(transparent)]
    Engine(#[from] protopay::Error),
    /// The server answered with an error (its stable `code` and message).
    #[error("{code} ({status}): {message}")]
    Api {
        /// The HTTP status.
        status: u16,
        /// The API's error code.
        code: String,
        /// Its message.
        message: String,
    },
    /// The server could not be reached, or answered something that is not the API.
    #[error("talking to the server: {0}")]
    Request(reqwest::Error),
    /// The command was not used as it must be.
    #[error("{0}")]
    Usage(String),
    /// Copying a backup into place failed; the backup itself is untouched.
    #[error("restoring {path}: {source}")]
    Restore {
        /// The directory being read or written.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The metrics recorder could not be installed.
    #[error("installing the metrics recorder: {0}")]
    Metrics(String),
    /// The address could not be listened on, or serving failed.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}
