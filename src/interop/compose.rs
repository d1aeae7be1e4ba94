//! A Compose file read into unit files.
