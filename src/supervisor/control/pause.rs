//! `POST /v1/units/NAME/pause` and `.../unpause`: the unit's container
//! frozen or thawed (the cgroup freezer) before the answer, which is the
//! unit's status. Like start and stop, members of the socket group may
//! ask.

use tokio::net::UnixStream;

use super::super::engine::{Command, PauseError};
use super::super::policy::OpError;
use super::http;
use super::{Control, ask, unit_status};

/// 200 with the unit's status; 404 for an unknown unit, 409 when its
/// state does not allow it (not running, not paused, an update on
/// trial), 500 when the kernel refused the freeze or the thaw.
pub(super) async fn pause(stream: &mut UnixStream, control: &Control, name: &str, pause: bool) -> std::io::Result<()> {
    match ask(control, |tx| Command::Pause(name.to_string(), pause, tx)).await {
        Some(Ok(())) => {}
        Some(Err(e @ PauseError::Unit(OpError::Unknown(_)))) => return http::error(stream, 404, &e.to_string()).await,
        Some(Err(e @ PauseError::Unit(_))) => return http::error(stream, 409, &e.to_string()).await,
        Some(Err(e @ PauseError::Freeze(_))) => return http::error(stream, 500, &e.to_string()).await,
        None => return http::error(stream, 500, "the supervisor is shutting down").await,
    }
    match unit_status(control, name).await {
        Some(u) => http::json(stream, 200, &u).await,
        None => http::error(stream, 404, &format!("no unit named {name:?}")).await,
    }
}
