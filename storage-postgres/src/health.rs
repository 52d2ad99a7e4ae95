//! One log line per database outage, not one per failed call: the first failure after a
//! success says what went wrong (a typed [`Cause`]), and the first success after failures says
//! how long it lasted. Contention (a lost race, retried) is not an outage.

use crate::{Cause, PgError};
use std::sync::Mutex;
use std::time::Instant;

/// Whether the database answered last time, and since when it has not.
#[derive(Debug, Default)]
pub(crate) struct Health(Mutex<Option<(Instant, Cause)>>);

impl Health {
    /// Note a call's result, logging the edges of an outage; the result passes through.
    pub(crate) fn observe<T>(&self, result: Result<T, PgError>) -> Result<T, PgError> {
        let mut down = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match &result {
            Ok(_) => {
                if let Some((since, cause)) = down.take() {
                    tracing::info!(after_ms = since.elapsed().as_millis() as u64, was = %cause,
                        "PostgreSQL answers again");
                }
            }
            Err(e) => match (e.cause(), down.as_ref()) {
                (Cause::Contention, _) => {}
                (cause, None) => {
                    tracing::warn!(%cause, error = %e, "PostgreSQL failing; calls fail until it answers (logged once)");
                    *down = Some((Instant::now(), cause));
                }
                (_, Some(_)) => {}
            },
        }
        result
    }
}
