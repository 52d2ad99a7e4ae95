//! The crate's one error type.

/// What can go wrong setting up protopay's HTTP parts.
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
    /// An API token is too short to resist guessing. Use at least
    /// [`MIN_TOKEN_CHARS`](crate::ApiAuth::MIN_TOKEN_CHARS) random characters.
    #[error("the {scope} API token is shorter than {min} characters")]
    WeakToken {
        /// Which token: `operate` or `read`.
        scope: &'static str,
        /// The least length accepted.
        min: usize,
    },
}
