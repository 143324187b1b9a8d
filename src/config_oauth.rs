//! `GOTRUE_EXTERNAL_<PROVIDER>_*` → [`OAuthSettings`].

use ferrotrue_actors::oauth::OAuthSettings;
use std::collections::HashMap;

/// Reads the external-provider variables; errors are one line per bad variable.
pub fn read(_vars: &HashMap<String, String>) -> Result<OAuthSettings, Vec<String>> {
    Ok(OAuthSettings::default())
}
