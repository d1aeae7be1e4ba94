//! Translation between unit files and the formats users arrive with or
//! leave for: a Compose file in (`supervisorctl import compose`), Kubernetes
//! objects out (`supervisorctl generate kube`). Pure: text in, text and
//! notes out; the commands that read files or ask the daemon live in
//! `cli`. Every key that cannot be carried is named, never dropped
//! silently (docs/interop.md).

pub mod compose;
pub mod kube;
