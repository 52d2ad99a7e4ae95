//! Durable [`protopay_engine`] storage on sled: atomic, flushed commits, the due-poll index and the event log as their own trees. (Arrives with the real-backends issue.)
