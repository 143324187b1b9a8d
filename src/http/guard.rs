//! What runs before a handler, as GoTrue's middlewares do: the per-client rate limiter of the
//! route (SPEC §0.4, §8.3) and the CAPTCHA check (`GOTRUE_SECURITY_CAPTCHA_*`) on the routes
//! GoTrue guards. Both refuse before any work is done (no hashing, no actor call).

use super::limits::{Client, Scope};
use super::request::Req;
use crate::config_security::CaptchaSettings;
use crate::state::Ctx;
use ferrotrue_actors::error::{AuthError, AuthResult, ErrorCode};
use http::Method;
use serde::Deserialize;
use serde_json::Value;

/// The body fields the guards read, parsed once per request (only on the routes that need
/// them). A body that is not a JSON object or form reads as empty; the handler reports it.
struct Fields(Value);

impl Fields {
    fn of(req: &Req, method: &Method, path: &str) -> Fields {
        let wanted = *method == Method::POST
            && matches!(
                path,
                "/signup" | "/verify" | "/otp" | "/magiclink" | "/recover" | "/resend" | "/token" | "/sso"
            );
        Fields(if wanted { req.json_or_default().unwrap_or(Value::Null) } else { Value::Null })
    }
    fn text(&self, name: &str) -> &str {
        self.0.get(name).and_then(Value::as_str).unwrap_or("")
    }
    fn captcha_token(&self) -> &str {
        self.0
            .get("gotrue_meta_security")
            .and_then(|m| m.get("captcha_token"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .trim()
    }
}

/// The rate-limit scope of a route, if it has one.
fn scope(method: &Method, path: &str, req: &Req, body: &Fields) -> Option<Scope> {
    match (method.as_str(), path) {
        // GoTrue's `/signup` with neither email nor phone is an anonymous sign-in.
        ("POST", "/signup") if body.text("email").trim().is_empty() && body.text("phone").trim().is_empty() => {
            Some(Scope::Anonymous)
        }
        ("POST", "/signup" | "/otp" | "/magiclink" | "/recover" | "/resend") | ("PUT", "/user") => Some(Scope::Otp),
        (_, "/verify") => Some(Scope::Verify),
        ("POST", "/token") => match req.query("grant_type") {
            Some("password" | "refresh_token" | "id_token" | "pkce") => Some(Scope::Token),
            Some("web3") => Some(Scope::Web3),
            _ => None,
        },
        (_, p) if p == "/sso" || p.starts_with("/sso/") => Some(Scope::Sso),
        ("POST", p) if p.starts_with("/factors/") && (p.ends_with("/challenge") || p.ends_with("/verify")) => {
            Some(Scope::Mfa)
        }
        _ => None,
    }
}

/// The address a typed-in code is presented for (`POST /verify` with `token` and an email or
/// phone, not a link's `token_hash`), normalised as the verifier will find it.
fn typed_code_target(method: &Method, path: &str, body: &Fields) -> Option<String> {
    if *method != Method::POST || path != "/verify" || body.text("token").is_empty() {
        return None;
    }
    let (email, phone) = (body.text("email"), body.text("phone"));
    (!email.trim().is_empty() || !phone.trim().is_empty()).then(|| super::limits::account_key(email, phone))
}

/// GoTrue's `verifyCaptcha` routes: sign-up, the mail/SMS senders, and `/token` except the
/// grants that prove an earlier check (`refresh_token`, `pkce`, `id_token`).
fn needs_captcha(method: &Method, path: &str, req: &Req) -> bool {
    match (method.as_str(), path) {
        ("POST", "/signup" | "/recover" | "/resend" | "/magiclink" | "/otp") => true,
        ("POST", "/token") => !matches!(req.query("grant_type"), Some("refresh_token" | "pkce" | "id_token")),
        ("POST", "/sso") => true,
        _ => false,
    }
}

/// Applies the route's rate limit and CAPTCHA, in GoTrue's order for the route.
pub async fn check(cx: &Ctx, req: &Req, path: &str, client: Client) -> AuthResult<()> {
    let method = &req.parts.method;
    let captcha = cx.config.captcha.as_ref().filter(|_| needs_captcha(method, path, req));
    // The body is parsed here only when a guard reads it: the sign-up scope, a typed code's
    // target, a CAPTCHA token (a refresh grant's body is parsed once, by its handler).
    let body = if captcha.is_some() || matches!(path, "/signup" | "/verify") {
        Fields::of(req, method, path)
    } else {
        Fields(Value::Null)
    };
    let limit = scope(method, path, req, &body);
    // GoTrue checks the CAPTCHA before the limiter on /signup and /token, after it elsewhere.
    let captcha_first = matches!(path, "/signup" | "/token");
    if let (Some(c), true) = (captcha, captcha_first) {
        verify_captcha(cx, c, req, &body).await?;
    }
    if let Some(scope) = limit {
        cx.limits.check(scope, client)?;
    }
    if let Some(target) = typed_code_target(method, path, &body) {
        cx.limits.code_attempt(&target)?;
    }
    if let (Some(c), false) = (captcha, captcha_first) {
        verify_captcha(cx, c, req, &body).await?;
    }
    Ok(())
}

/// `gotrue_meta_security.captcha_token` checked at the provider's siteverify endpoint; admin
/// callers skip it (GoTrue).
async fn verify_captcha(cx: &Ctx, settings: &CaptchaSettings, req: &Req, body: &Fields) -> AuthResult<()> {
    if let Some(token) = req.bearer() {
        if cx.actors.jwt.verify(token).is_ok_and(|claims| cx.actors.jwt.is_admin_role(&claims)) {
            return Ok(());
        }
    }
    let token = body.captcha_token();
    if token.is_empty() {
        return Err(AuthError::bad_request(
            ErrorCode::CaptchaFailed,
            "captcha protection: request disallowed (no captcha_token found)",
        ));
    }
    let outcome = siteverify(settings, token, &req.client_ip()).await.map_err(|detail| {
        AuthError::internal("captcha verification process failed").with_source(ferrotrue_actors::error::Detail(detail))
    })?;
    if !outcome.success {
        tracing::info!(error_codes = ?outcome.error_codes, "captcha refused");
        return Err(AuthError::bad_request(
            ErrorCode::CaptchaFailed,
            format!("captcha protection: request disallowed ({})", outcome.error_codes.join(", ")),
        ));
    }
    Ok(())
}

/// The provider's answer (hCaptcha and Turnstile share it).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SiteVerify {
    success: bool,
    #[serde(rename = "error-codes")]
    error_codes: Vec<String>,
}

async fn siteverify(settings: &CaptchaSettings, token: &str, remote_ip: &str) -> Result<SiteVerify, String> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(reqwest::Client::new);
    let form = [("secret", settings.secret.expose()), ("response", token), ("remoteip", remote_ip)];
    let resp = client
        .post(&settings.verify_url)
        .timeout(settings.timeout)
        .form(&form)
        .send()
        .await
        .map_err(|e| e.to_string())?;
    resp.json::<SiteVerify>().await.map_err(|e| format!("captcha provider answered something other than JSON: {e}"))
}
