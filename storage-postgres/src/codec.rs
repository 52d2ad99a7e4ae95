//! Records as MessagePack with named fields — the codec of sled's format 1, so that both
//! stores keep exactly what the engine's conformance round trip proves survives.

use crate::PgError;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub(crate) fn encode<T: Serialize>(value: &T) -> protopay_engine::storage::Result<Vec<u8>> {
    rmp_serde::to_vec_named(value).map_err(|e| {
        protopay_engine::storage::StorageError::Failed(std::sync::Arc::new(PgError::Corrupt {
            table: "encode",
            key: String::new(),
            reason: e.to_string(),
        }))
    })
}

pub(crate) fn decode<T: DeserializeOwned>(table: &'static str, key: &str, bytes: &[u8]) -> Result<T, PgError> {
    rmp_serde::from_slice(bytes).map_err(|e| PgError::Corrupt {
        table,
        key: key.to_owned(),
        reason: e.to_string(),
    })
}
