//! protopay: embeddable escrow engine for the LFT agreement-payment API. Re-exports the crates.
pub use protopay_engine as engine;
pub use protopay_engine::*;
