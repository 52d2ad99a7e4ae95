//! Named leases: work that one instance at a time should do (a webhook consumer's pushes),
//! held on the store's clock and handed over at shutdown, with a fencing epoch that tells a
//! receiver which holder a late delivery came from.

use super::Engine;
use crate::Result;

impl Engine {
    /// Hold the named lease `name` for this engine instance for `lease` (see
    /// [`Storage::hold_lease`](crate::storage::Storage::hold_lease)): its fencing epoch
    /// while this instance may do the work it names, `None` while another instance holds
    /// it. [`Engine::shutdown`] hands it over.
    pub async fn hold_lease(&self, name: &str, lease: std::time::Duration) -> Result<Option<u64>> {
        Ok(self.storage().hold_lease(name, &self.inner.instance, lease).await?)
    }
}
