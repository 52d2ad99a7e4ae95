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
    /// An operator's name is empty, too long, or not plain (letters, digits, `.`, `_`, `-`).
    #[error("an operator's name must be 1 to {max} letters, digits, '.', '_' or '-'")]
    OperatorName {
        /// The longest name.
        max: usize,
    },
    /// Two operators share a name: decisions would not say who made them.
    #[error("operator {name:?} is named twice")]
    DuplicateOperator {
        /// The name.
        name: String,
    },
    /// An operator's token hash is not 64 hex digits (the SHA-256 of their token).
    #[error("operator {name:?}: token_sha256 must be 64 hex digits (printf %s \"$TOKEN\" | sha256sum)")]
    OperatorHash {
        /// The operator.
        name: String,
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
