//! What every email flow shares: one-time tokens (a numeric code plus a link token in GoTrue's
//! format — 56 lowercase hex characters, `pkce_`-prefixed for PKCE flows — but random, not
//! GoTrue's derivable `sha224(address + code)`), the link in the mail, the per-user send
//! spacing, PKCE parameter checks and flow-state creation. The issuer stores only keyed MACs
//! of both (see [`crate::otp_issuer`]).
//!
//! Order of a send: spacing check → (flow state) → token → mail → stamp `*_sent_at`. A failed
//! delivery therefore leaves no spacing stamp, so the user can retry at once.

use crate::clock::Timestamp;
use crate::crypto::{random_bytes, Secret};
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::mailer::templates::{TemplateData, TemplateKind};
use crate::oauth_flow::FlowState;
use crate::otp_issuer::NewToken;
use crate::user_registry::model::User;
use crate::Actors;
use uuid::Uuid;

/// Prefix of tokens that belong to a PKCE flow.
pub const PKCE_PREFIX: &str = "pkce_";

/// The kinds of email links and codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    Signup,
    Invite,
    MagicLink,
    Recovery,
    EmailChangeCurrent,
    EmailChangeNew,
    Reauthentication,
}

impl LinkKind {
    /// `type=` in the link.
    pub fn verify_type(self) -> &'static str {
        match self {
            LinkKind::Signup => "signup",
            LinkKind::Invite => "invite",
            LinkKind::MagicLink => "magiclink",
            LinkKind::Recovery => "recovery",
            LinkKind::EmailChangeCurrent | LinkKind::EmailChangeNew => "email_change",
            LinkKind::Reauthentication => "reauthentication",
        }
    }
    /// GoTrue's token column / one_time_tokens type.
    pub fn token_type(self) -> &'static str {
        match self {
            LinkKind::Signup | LinkKind::Invite => "confirmation_token",
            LinkKind::MagicLink | LinkKind::Recovery => "recovery_token",
            LinkKind::EmailChangeCurrent => "email_change_token_current",
            LinkKind::EmailChangeNew => "email_change_token_new",
            LinkKind::Reauthentication => "reauthentication_token",
        }
    }
    fn template(self) -> TemplateKind {
        match self {
            LinkKind::Signup => TemplateKind::Confirmation,
            LinkKind::Invite => TemplateKind::Invite,
            LinkKind::MagicLink => TemplateKind::MagicLink,
            LinkKind::Recovery => TemplateKind::Recovery,
            LinkKind::EmailChangeCurrent | LinkKind::EmailChangeNew => TemplateKind::EmailChange,
            LinkKind::Reauthentication => TemplateKind::Reauthentication,
        }
    }
    /// The amr method a PKCE session from this link carries.
    pub fn pkce_method(self) -> &'static str {
        match self {
            LinkKind::Signup => "email/signup",
            LinkKind::Invite => "invite",
            LinkKind::MagicLink => "magiclink",
            LinkKind::Recovery => "recovery",
            LinkKind::EmailChangeCurrent | LinkKind::EmailChangeNew => "email_change",
            LinkKind::Reauthentication => "reauthentication",
        }
    }
    fn url_path(self, a: &Actors) -> &str {
        let paths = &a.settings.mail.url_paths;
        match self {
            LinkKind::Signup => &paths.confirmation,
            LinkKind::Invite => &paths.invite,
            LinkKind::MagicLink | LinkKind::Recovery => &paths.recovery,
            LinkKind::EmailChangeCurrent | LinkKind::EmailChangeNew | LinkKind::Reauthentication => &paths.email_change,
        }
    }
}

/// Validated PKCE parameters of an email flow.
#[derive(Debug, Clone)]
pub struct Pkce {
    pub challenge: String,
    pub method: String,
}

/// SPEC §7.3: both or neither; challenge 43–128 of `[A-Za-z0-9._~-]`; method s256 or plain.
pub fn pkce_params(challenge: Option<&str>, method: Option<&str>) -> AuthResult<Option<Pkce>> {
    let challenge = challenge.filter(|c| !c.is_empty());
    let method = method.filter(|m| !m.is_empty());
    match (challenge, method) {
        (None, None) => Ok(None),
        (Some(c), Some(m)) => {
            let valid =
                (43..=128).contains(&c.len()) && c.chars().all(|ch| ch.is_ascii_alphanumeric() || "._~-".contains(ch));
            if !valid {
                return Err(AuthError::validation("code challenge has to be between 43 and 128 characters"));
            }
            let method = m.to_lowercase();
            if method != "s256" && method != "plain" {
                return Err(AuthError::validation(format!("code challenge method not supported: {m}")));
            }
            Ok(Some(Pkce { challenge: c.to_owned(), method }))
        }
        _ => Err(AuthError::validation("PKCE flow requires code_challenge_method and code_challenge")),
    }
}

/// A fresh link token: 224 random bits as 56 lowercase hex characters (the shape of GoTrue's
/// token hash, so clients and templates see no difference), independent of the code, so it
/// can only be copied from the mail or from `generate_link`. `pkce_`-prefixed for PKCE flows.
pub fn new_link_token(pkce: bool) -> String {
    let hex = hex::encode(random_bytes::<28>());
    if pkce {
        format!("{PKCE_PREFIX}{hex}")
    } else {
        hex
    }
}

/// A uniformly random numeric code of `GOTRUE_MAILER_OTP_LENGTH` digits.
pub fn numeric_otp(len: usize) -> String {
    (0..len).map(|_| char::from(b'0' + rand::random_range(0..10u8))).collect()
}

/// 429 `over_email_send_rate_limit` while the last mail of this kind is younger than
/// `GOTRUE_SMTP_MAX_FREQUENCY`.
pub fn check_spacing(a: &Actors, last_sent: Option<Timestamp>) -> AuthResult<()> {
    spacing(a, last_sent, a.settings.smtp.max_frequency, ErrorCode::OverEmailSendRateLimit)
}

/// GoTrue's per-user send spacing, shared by mail and SMS: `code` (429) with the whole
/// seconds left while `last_sent + frequency` is in the future.
pub fn spacing(
    a: &Actors,
    last_sent: Option<Timestamp>,
    frequency: std::time::Duration,
    code: ErrorCode,
) -> AuthResult<()> {
    let Some(last) = last_sent else { return Ok(()) };
    let next = last.plus(frequency);
    let now = a.clock.now();
    if now < next {
        let wait = (next.0 - now.0 + 999_999) / 1_000_000;
        return Err(AuthError::too_many_requests(
            code,
            format!("For security purposes, you can only request this after {wait} seconds."),
        ));
    }
    Ok(())
}

/// One link mail to send.
pub struct Link<'a> {
    pub kind: LinkKind,
    /// The address the token is bound to and the mail goes to.
    pub address: &'a str,
    pub redirect_to: &'a str,
    pub pkce: Option<&'a Pkce>,
    /// For email-change mails: the new address.
    pub new_email: &'a str,
}

/// The per-user send spacing clock of a link kind: GoTrue's `*_sent_at` column.
fn sent_at(user: &User, kind: LinkKind) -> Option<Timestamp> {
    match kind {
        LinkKind::Signup | LinkKind::Invite => user.confirmation_sent_at,
        LinkKind::MagicLink | LinkKind::Recovery => user.recovery_sent_at,
        LinkKind::EmailChangeCurrent | LinkKind::EmailChangeNew => user.email_change_sent_at,
        LinkKind::Reauthentication => user.reauthentication_sent_at,
    }
}

/// The common shape of a user-requested mail: spacing check on the kind's clock, send, then
/// start the clock — only after a successful send, so a failed delivery can be retried at once.
/// Returns the user with the clock stamped.
pub async fn send_spaced(a: &Actors, user: &User, link: Link<'_>) -> AuthResult<User> {
    let kind = link.kind;
    check_spacing(a, sent_at(user, kind))?;
    send_link(a, user, link).await?;
    let now = a.clock.now();
    a.users
        .update(user.id, move |u| {
            match kind {
                LinkKind::Signup | LinkKind::Invite => u.confirmation_sent_at = Some(now),
                LinkKind::MagicLink | LinkKind::Recovery => u.recovery_sent_at = Some(now),
                LinkKind::EmailChangeCurrent | LinkKind::EmailChangeNew => u.email_change_sent_at = Some(now),
                LinkKind::Reauthentication => u.reauthentication_sent_at = Some(now),
            }
            Ok(())
        })
        .await
}

/// A token as issued, before (or instead of) mailing it.
#[derive(Debug, Clone)]
pub struct IssuedLink {
    /// The code the user can type.
    pub otp: String,
    /// The link's `token` (`{{ .TokenHash }}`, `generate_link`'s `hashed_token`),
    /// `pkce_`-prefixed for PKCE flows. Only its MAC is stored.
    pub hashed_token: String,
    /// The full `/verify` link.
    pub action_link: String,
}

/// Issues the token (and flow state), renders and sends the mail.
pub async fn send_link(a: &Actors, user: &User, link: Link<'_>) -> AuthResult<()> {
    let issued = issue_link(a, user, &link).await?;
    if a.settings.hooks.send_email.is_some() {
        // The send_email hook replaces SMTP for every mail (SPEC §11). GoTrue's convention for
        // secure email change: `token`/`token_hash` go to the new address, `*_new` to the
        // current one.
        let (token, token_hash, token_new, token_hash_new) = match link.kind {
            LinkKind::EmailChangeCurrent => (String::new(), String::new(), issued.otp, issued.hashed_token),
            _ => (issued.otp, issued.hashed_token, String::new(), String::new()),
        };
        let payload = serde_json::json!({
            "user": crate::hooks::user_json(user),
            "email_data": {
                "token": token,
                "token_hash": token_hash,
                "redirect_to": link.redirect_to,
                "email_action_type": link.kind.verify_type(),
                "site_url": a.settings.mail.site_url,
                "token_new": token_new,
                "token_hash_new": token_hash_new,
            },
        });
        a.durable().await?;
        return a.mail.send_email_hook(payload).await;
    }
    let data = TemplateData {
        SiteURL: a.settings.mail.site_url.clone(),
        ConfirmationURL: issued.action_link,
        Email: if user.email.is_empty() { link.address.to_owned() } else { user.email.clone() },
        NewEmail: link.new_email.to_owned(),
        SendingTo: link.address.to_owned(),
        Token: issued.otp,
        TokenHash: issued.hashed_token,
        RedirectTo: link.redirect_to.to_owned(),
        Data: serde_json::Value::Object(user.user_metadata.to_map()),
    };
    // The token must survive a crash before its mail can leave.
    a.durable().await?;
    a.mail.send_auth(link.kind.template(), link.address, data).await
}

/// Issues the token (and, for PKCE, the flow state) without sending anything
/// (`POST /admin/generate_link` uses this directly).
pub async fn issue_link(a: &Actors, user: &User, link: &Link<'_>) -> AuthResult<IssuedLink> {
    let now = a.clock.now();
    let otp = numeric_otp(a.settings.otp.length);
    let link_token = new_link_token(link.pkce.is_some());
    if let Some(pkce) = link.pkce {
        a.oauth
            .create(FlowState {
                id: Uuid::new_v4(),
                auth_code: Uuid::new_v4().to_string(),
                code_challenge: pkce.challenge.clone(),
                code_challenge_method: pkce.method.clone(),
                provider: "email".into(),
                authentication_method: link.kind.pkce_method().into(),
                user_id: Some(user.id),
                redirect_to: link.redirect_to.to_owned(),
                created_at: now,
            })
            .await?;
    }
    a.otps
        .issue(NewToken {
            user_id: user.id,
            token_type: link.kind.token_type().into(),
            relates_to: link.address.to_owned(),
            link: Some(Secret(link_token.clone())),
            code: Secret(otp.clone()),
            expires_at: None,
        })
        .await?;
    let action_link = confirmation_url(a, link.kind, &link_token, link.redirect_to);
    Ok(IssuedLink { otp, hashed_token: link_token, action_link })
}

/// `API_EXTERNAL_URL` joined with the mail's path like an HTML link (an absolute path replaces
/// the base path, as in GoTrue), then `token`, `type` and `redirect_to` — the last escaped only
/// when it contains `&`, `=` or `#`, as GoTrue does.
fn confirmation_url(a: &Actors, kind: LinkKind, token: &str, redirect_to: &str) -> String {
    let base = &a.settings.mail.api_external_url;
    let path = kind.url_path(a);
    let joined = url::Url::parse(base).and_then(|b| b.join(path)).map(|u| u.to_string());
    let joined = joined.unwrap_or_else(|_| format!("{}{path}", base.trim_end_matches('/')));
    let redirect = if redirect_to.contains(['&', '=', '#']) {
        url::form_urlencoded::byte_serialize(redirect_to.as_bytes()).collect::<String>()
    } else {
        redirect_to.to_owned()
    };
    let sep = if joined.contains('?') { '&' } else { '?' };
    format!("{joined}{sep}token={token}&type={}&redirect_to={redirect}", kind.verify_type())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_tokens_are_random_lowercase_hex_of_gotrues_shape() {
        let t = new_link_token(false);
        assert_eq!(t.len(), 56);
        assert!(t.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)), "{t}");
        assert_ne!(t, new_link_token(false));
        let p = new_link_token(true);
        assert!(p.starts_with(PKCE_PREFIX) && p.len() == PKCE_PREFIX.len() + 56, "{p}");
    }

    #[test]
    fn otps_are_digits_of_the_configured_length() {
        let otp = numeric_otp(8);
        assert_eq!(otp.len(), 8);
        assert!(otp.chars().all(|c| c.is_ascii_digit()));
    }

    #[test]
    fn pkce_parameter_rules() {
        let good = "a".repeat(43);
        assert!(pkce_params(None, None).unwrap().is_none());
        assert_eq!(pkce_params(Some(&good), Some("S256")).unwrap().unwrap().method, "s256");
        assert!(pkce_params(Some(&good), None).is_err());
        assert!(pkce_params(Some("short"), Some("s256")).is_err());
        assert!(pkce_params(Some(&good), Some("md5")).is_err());
    }
}
