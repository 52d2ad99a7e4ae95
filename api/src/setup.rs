//! What can go wrong setting up the API or a webhook: the crate's one setup error.

/// Why the API's tokens or a webhook could not be set up. Neither a token nor a secret ever
/// appears in it.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// An API token or webhook secret is too short to resist guessing. Use at least
    /// [`MIN_TOKEN_CHARS`](crate::ApiAuth::MIN_TOKEN_CHARS) random characters.
    #[error("the {scope} token is shorter than {min} characters")]
    WeakToken {
        /// Which token: `operate`, `read` or `webhook`.
        scope: &'static str,
        /// The least length accepted.
        min: usize,
    },
    /// The webhook URL is not an absolute http(s) URL.
    #[error("webhook URL {url:?} must start with http:// or https://")]
    WebhookUrl {
        /// What was given.
        url: String,
    },
    /// The webhook's HTTP client could not be built (TLS setup).
    #[error("building the webhook's HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}
