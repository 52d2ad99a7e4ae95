//! The crate's one error type.

/// What can go wrong setting up the transport.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The base URL is not an absolute http(s) URL.
    #[error("base URL {url:?} must start with http:// or https://")]
    BaseUrl {
        /// What was given.
        url: String,
    },
    /// The HTTP client could not be built (TLS setup).
    #[error("building the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}
