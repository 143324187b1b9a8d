//! `POST /logout`. Port of logout.go `Logout`.

use super::auth::Authenticated;
use super::{audit, AuditActor};
use crate::error::{AuthError, AuthResult};
use crate::session_manager::state::LogoutScope;
use crate::Actors;

/// Parses `?scope=`: empty or `global`, `local`, `others`.
pub fn scope(raw: Option<&str>) -> AuthResult<LogoutScope> {
    match raw.unwrap_or("") {
        "" | "global" => Ok(LogoutScope::Global),
        "local" => Ok(LogoutScope::Local),
        "others" => Ok(LogoutScope::Others),
        other => Err(AuthError::validation(format!("Unsupported logout scope {other:?}; use global, local or others"))),
    }
}

/// Ends sessions by scope; a token without a session logs out globally.
pub async fn logout(a: &Actors, auth: Authenticated, scope: LogoutScope) -> AuthResult<()> {
    let current = auth.session.as_ref().map(|s| s.id);
    a.sessions.logout(auth.user.id, current, scope).await?;
    audit(a, AuditActor::User(&auth.user), "logout", &[]).await?;
    Ok(())
}
