//! HTTP for protopay: a `Transport` over reqwest with rustls, and the callback receiver as an axum `Router` and as a plain function. (Arrives with the real-backends issue.)
