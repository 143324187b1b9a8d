//! `GET /settings`. Port of settings.go (SPEC §8.4, exact shape).

use crate::http::response::{self, Resp};
use crate::state::Ctx;
use ferrotrue_actors::oauth::ProviderKind;
use http::StatusCode;
use serde_json::{json, Map, Value};

/// OAuth providers GoTrue lists (all `false` unless configured below).
const PROVIDERS: &[&str] = &[
    "apple",
    "azure",
    "bitbucket",
    "discord",
    "facebook",
    "snapchat",
    "figma",
    "fly",
    "github",
    "gitlab",
    "google",
    "keycloak",
    "kakao",
    "linkedin",
    "linkedin_oidc",
    "notion",
    "spotify",
    "slack",
    "slack_oidc",
    "workos",
    "twitch",
    "twitter",
    "zoom",
];

/// Which sign-in methods are on.
pub fn get(cx: &Ctx) -> Resp {
    let s = &cx.config.settings.signup;
    let mut external = Map::new();
    external.insert("anonymous_users".into(), json!(s.anonymous_enabled));
    for p in PROVIDERS {
        external.insert((*p).into(), json!(false));
    }
    // The configured OAuth providers; the generic OpenID Connect one (ferrotrue's addition) is
    // listed only when enabled, so the default shape stays GoTrue's.
    let oauth = &cx.config.settings.oauth;
    for kind in ProviderKind::ALL {
        if kind != ProviderKind::Oidc || oauth.is_enabled(kind) {
            external.insert(kind.name().into(), json!(oauth.is_enabled(kind)));
        }
    }
    external.insert("email".into(), json!(s.email_enabled));
    external.insert("phone".into(), json!(s.phone_enabled));
    response::json_value(
        StatusCode::OK,
        &json!({
            "external": Value::Object(external),
            "disable_signup": s.disable_signup,
            "mailer_autoconfirm": s.mailer_autoconfirm,
            "phone_autoconfirm": s.sms_autoconfirm,
            "sms_provider": cx.config.settings.sms.provider_name(),
            "saml_enabled": false,
            "saml_private_key_next_configured": false,
            "passkeys_enabled": false,
        }),
    )
}
