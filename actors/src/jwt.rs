//! Access tokens: GoTrue's claims (SPEC §4.1), signed with `GOTRUE_JWT_KEYS`' signing key or HS256
//! with `GOTRUE_JWT_SECRET`, and strict verification: each key accepts only its own algorithm
//! (key handling lives in [`crate::jwt_keys`]).

use crate::clock::Timestamp;
use crate::error::{AuthError, AuthResult, ErrorCode};
use crate::session_manager::model::Session;
use crate::settings::JwtSettings;
use crate::user_registry::model::User;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Claims of an access token, in GoTrue's order.
#[derive(Debug, Clone, Serialize)]
pub struct AccessClaims {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub email: String,
    pub phone: String,
    pub app_metadata: serde_json::Value,
    pub user_metadata: serde_json::Value,
    pub role: String,
    pub aal: String,
    pub amr: Vec<AmrClaim>,
    pub session_id: String,
    pub is_anonymous: bool,
}

/// One `amr` entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AmrClaim {
    pub method: String,
    pub timestamp: i64,
}

/// What the server reads back from a presented token. Lenient on purpose: Supabase's
/// `anon`/`service_role` keys have no `sub`, `aud` or `exp`.
#[derive(Debug, Clone, Deserialize)]
pub struct PresentedClaims {
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub aud: Option<serde_json::Value>,
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub session_id: Option<String>,
    #[serde(default)]
    pub exp: Option<i64>,
    #[serde(default)]
    pub is_anonymous: Option<bool>,
}

impl PresentedClaims {
    /// The `aud` claim as one string (first element of an array).
    pub fn audience(&self) -> Option<&str> {
        match &self.aud {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(serde_json::Value::Array(a)) => a.first().and_then(|v| v.as_str()),
            _ => None,
        }
    }
}

/// Signing and verification keys built once from the settings.
#[derive(Clone)]
pub struct JwtKeys {
    encoding: EncodingKey,
    header: Header,
    /// `GOTRUE_JWT_SECRET` (HS256): tokens without a known `kid`.
    secret: Verifier,
    /// `GOTRUE_JWT_KEYS`, looked up by `kid`.
    by_kid: Vec<(String, Verifier)>,
    /// `GOTRUE_JWT_VALID_METHODS` (or its default).
    valid_methods: Vec<Algorithm>,
    settings: JwtSettings,
}

/// One verification key and the only algorithm it accepts.
#[derive(Clone)]
struct Verifier {
    decoding: DecodingKey,
    validation: Validation,
}

impl Verifier {
    fn new(decoding: DecodingKey, alg: Algorithm) -> Verifier {
        let mut validation = Validation::new(alg);
        // One algorithm per key: a token whose `alg` is not its key's is refused (no algorithm
        // confusion). `aud` is checked by GET /user, not by the parser (GoTrue).
        validation.algorithms = vec![alg];
        validation.validate_aud = false;
        validation.leeway = 0;
        // Hand-made service keys may have no `exp`; when present it is enforced, and so is `nbf`
        // (golang-jwt v5's defaults, no leeway). `iat` is not checked, as in GoTrue.
        validation.required_spec_claims.clear();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        Verifier { decoding, validation }
    }
}

impl JwtKeys {
    /// Builds the keys: HS256 from the secret, plus `GOTRUE_JWT_KEYS` when configured (whose
    /// signing key then signs).
    pub fn new(settings: &JwtSettings) -> JwtKeys {
        let secret = settings.secret.expose().as_bytes();
        let (encoding, header) = match settings.keys.iter().find(|k| k.sign) {
            Some(key) => {
                let mut header = Header::new(key.alg);
                header.kid = Some(key.kid.clone());
                (key.encoding.clone(), header)
            }
            None => {
                let mut header = Header::new(Algorithm::HS256);
                if !settings.key_id.is_empty() {
                    header.kid = Some(settings.key_id.clone());
                }
                (EncodingKey::from_secret(secret), header)
            }
        };
        let by_kid = settings.keys.iter().map(|k| (k.kid.clone(), Verifier::new(k.decoding.clone(), k.alg))).collect();
        let valid_methods = if settings.valid_methods.is_empty() {
            let mut methods: Vec<Algorithm> = settings.keys.iter().map(|k| k.alg).collect();
            methods.push(Algorithm::HS256);
            methods.dedup();
            methods
        } else {
            settings.valid_methods.clone()
        };
        JwtKeys {
            encoding,
            header,
            secret: Verifier::new(DecodingKey::from_secret(secret), Algorithm::HS256),
            by_kid,
            valid_methods,
            settings: settings.clone(),
        }
    }

    /// The algorithms presented tokens may use (`GOTRUE_JWT_VALID_METHODS`), signing one first.
    pub fn valid_methods(&self) -> Vec<Algorithm> {
        let mut out = vec![self.header.alg];
        out.extend(self.valid_methods.iter().copied().filter(|a| *a != self.header.alg));
        out.retain(|a| self.valid_methods.contains(a));
        out
    }

    /// The claims GoTrue puts in a user's access token for `session`.
    pub fn claims_for(&self, user: &User, session: &Session, now: Timestamp) -> AccessClaims {
        let iat = now.unix_seconds();
        let mut amr: Vec<AmrClaim> =
            session.amr.iter().map(|a| AmrClaim { method: a.method.clone(), timestamp: a.at.unix_seconds() }).collect();
        // Most recent first; entries of the same second keep "newest added first" (the stored
        // list is in the order they were added).
        amr.reverse();
        amr.sort_by_key(|a| std::cmp::Reverse(a.timestamp));
        AccessClaims {
            iss: self.settings.issuer.clone(),
            sub: user.id.to_string(),
            aud: user.aud.clone(),
            exp: iat + i64::try_from(self.settings.exp.as_secs()).unwrap_or(i64::MAX / 2),
            iat,
            email: user.email.clone(),
            phone: user.phone.clone(),
            app_metadata: serde_json::Value::Object(user.app_metadata.to_map()),
            user_metadata: serde_json::Value::Object(user.user_metadata.to_map()),
            role: user.role.clone(),
            aal: session.aal.clone(),
            amr,
            session_id: session.id.to_string(),
            is_anonymous: user.is_anonymous,
        }
    }

    /// Signs any claims with the configured key.
    pub fn sign<C: Serialize>(&self, claims: &C) -> AuthResult<String> {
        jsonwebtoken::encode(&self.header, claims, &self.encoding)
            .map_err(|e| AuthError::unexpected(format!("jwt sign: {e}")))
    }

    /// Verifies signature, algorithm and expiry. Any failure is GoTrue's 403 `bad_jwt`.
    ///
    /// The key is chosen as GoTrue's `parseJWTClaims` does: the configured key named by `kid`
    /// (or the secret when `kid` is `GOTRUE_JWT_KEY_ID`), else the secret for `alg: HS256`, else
    /// none. The chosen key accepts only its own algorithm.
    pub fn verify(&self, token: &str) -> AuthResult<PresentedClaims> {
        let bad = |detail: String| {
            AuthError::forbidden(
                ErrorCode::BadJwt,
                format!("invalid JWT: unable to parse or verify signature, {detail}"),
            )
        };
        let header = jsonwebtoken::decode_header(token).map_err(|e| bad(describe(&e)))?;
        if !self.valid_methods.contains(&header.alg) {
            return Err(bad(format!(
                "token is unverifiable: signing method {} is invalid",
                crate::jwt_keys::alg_name(header.alg)
            )));
        }
        let kid = header.kid.as_deref().filter(|k| !k.is_empty());
        let verifier = match kid.and_then(|kid| self.by_kid.iter().find(|(k, _)| k == kid)) {
            Some((_, v)) => v,
            None if kid.is_some() && kid == Some(self.settings.key_id.as_str()) => &self.secret,
            None if header.alg == Algorithm::HS256 => &self.secret,
            None => {
                return Err(bad("token is unverifiable: error while executing keyfunc: unrecognized JWT kid".into()))
            }
        };
        jsonwebtoken::decode::<PresentedClaims>(token, &verifier.decoding, &verifier.validation)
            .map(|data| data.claims)
            .map_err(|e| bad(describe(&e)))
    }

    /// Verifies and requires a user subject: the checks of GoTrue's `requireAuthentication`.
    pub fn verify_user_token(&self, token: &str) -> AuthResult<(PresentedClaims, Uuid)> {
        let claims = self.verify(token)?;
        let sub = claims
            .sub
            .as_deref()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| AuthError::forbidden(ErrorCode::BadJwt, "invalid claim: missing sub claim"))?;
        let user_id = Uuid::parse_str(sub)
            .map_err(|_| AuthError::bad_request(ErrorCode::BadJwt, "invalid claim: sub claim must be a UUID"))?;
        Ok((claims, user_id))
    }

    /// The `session_id` claim as GoTrue reads it: absent, empty or the nil UUID mean "no session";
    /// anything else must be a UUID (403 `bad_jwt`).
    pub fn session_id(claims: &PresentedClaims) -> AuthResult<Option<Uuid>> {
        match claims.session_id.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(raw) => {
                let id = Uuid::parse_str(raw).map_err(|_| {
                    AuthError::forbidden(ErrorCode::BadJwt, "invalid claim: session_id claim must be a UUID")
                })?;
                Ok((!id.is_nil()).then_some(id))
            }
        }
    }

    /// True when the token's role is one of `GOTRUE_JWT_ADMIN_ROLES`.
    pub fn is_admin_role(&self, claims: &PresentedClaims) -> bool {
        claims.role.as_ref().is_some_and(|r| self.settings.admin_roles.contains(r))
    }

    /// Token lifetime in seconds (`expires_in`).
    pub fn lifetime_secs(&self) -> i64 {
        i64::try_from(self.settings.exp.as_secs()).unwrap_or(i64::MAX / 2)
    }
}

fn describe(e: &jsonwebtoken::errors::Error) -> String {
    use jsonwebtoken::errors::ErrorKind as K;
    match e.kind() {
        K::ExpiredSignature => "token has invalid claims: token is expired".into(),
        K::InvalidAlgorithm => "token is unverifiable: signing method is not allowed".into(),
        K::InvalidSignature => "token signature is invalid: signature is invalid".into(),
        K::ImmatureSignature => "token has invalid claims: token is not valid yet".into(),
        K::InvalidClaimFormat(claim) => format!("token has invalid claims: {claim} has an invalid format"),
        _ => "token is malformed".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Settings;

    fn keys() -> JwtKeys {
        JwtKeys::new(&Settings::for_tests().jwt)
    }

    #[test]
    fn rejects_other_algorithms_even_with_the_right_secret() {
        let s = Settings::for_tests();
        let token = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &serde_json::json!({"sub": Uuid::nil().to_string(), "role": "authenticated"}),
            &EncodingKey::from_secret(s.jwt.secret.expose().as_bytes()),
        )
        .unwrap();
        let err = keys().verify(&token).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadJwt);
    }

    #[test]
    fn rejects_expired_and_accepts_tokens_without_exp() {
        let k = keys();
        let expired = k.sign(&serde_json::json!({"sub": "x", "exp": 1000})).unwrap();
        assert!(k.verify(&expired).unwrap_err().msg.contains("expired"));
        let service = k.sign(&serde_json::json!({"role": "service_role"})).unwrap();
        assert!(k.is_admin_role(&k.verify(&service).unwrap()));
    }

    #[test]
    fn missing_or_bad_sub() {
        let k = keys();
        let none = k.sign(&serde_json::json!({"role": "anon"})).unwrap();
        assert_eq!(k.verify_user_token(&none).unwrap_err().kind, crate::error::ErrorKind::Forbidden);
        let bad = k.sign(&serde_json::json!({"sub": "not-a-uuid"})).unwrap();
        assert_eq!(k.verify_user_token(&bad).unwrap_err().kind, crate::error::ErrorKind::BadRequest);
    }

    fn now() -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
    }

    #[test]
    fn nbf_in_the_future_is_refused_and_iat_is_not_checked() {
        let k = keys();
        let early = k.sign(&serde_json::json!({"role": "service_role", "nbf": now() + 60})).unwrap();
        let err = k.verify(&early).unwrap_err();
        assert_eq!((err.kind, err.code), (crate::error::ErrorKind::Forbidden, ErrorCode::BadJwt));
        assert!(err.msg.contains("not valid yet"), "{}", err.msg);
        let started = k.sign(&serde_json::json!({"role": "service_role", "nbf": now() - 5})).unwrap();
        assert!(k.verify(&started).is_ok());
        let bad_nbf = k.sign(&serde_json::json!({"role": "service_role", "nbf": "soon"})).unwrap();
        assert_eq!(k.verify(&bad_nbf).unwrap_err().code, ErrorCode::BadJwt);
        // golang-jwt v5 (GoTrue's parser) only checks `iat` when asked to; GoTrue does not ask.
        let future_iat = k.sign(&serde_json::json!({"role": "service_role", "iat": now() + 3600})).unwrap();
        assert!(k.verify(&future_iat).is_ok());
    }

    #[test]
    fn unsigned_and_foreign_algorithms_are_refused() {
        let k = keys();
        let valid = k.sign(&serde_json::json!({"role": "service_role"})).unwrap();
        let payload = valid.split('.').nth(1).unwrap();
        for header in
            [r#"{"alg":"none","typ":"JWT"}"#, r#"{"alg":"HS384","typ":"JWT"}"#, r#"{"alg":"RS256","typ":"JWT"}"#]
        {
            use base64::Engine as _;
            let h = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header);
            for sig in ["", "AAAA", valid.split('.').nth(2).unwrap()] {
                let token = format!("{h}.{payload}.{sig}");
                assert_eq!(k.verify(&token).unwrap_err().code, ErrorCode::BadJwt, "{header} {sig:?}");
            }
        }
    }

    #[test]
    fn session_id_claim() {
        let claims = |v: serde_json::Value| -> PresentedClaims { serde_json::from_value(v).unwrap() };
        assert_eq!(JwtKeys::session_id(&claims(serde_json::json!({}))).unwrap(), None);
        assert_eq!(JwtKeys::session_id(&claims(serde_json::json!({"session_id": ""}))).unwrap(), None);
        assert_eq!(
            JwtKeys::session_id(&claims(serde_json::json!({"session_id": Uuid::nil().to_string()}))).unwrap(),
            None
        );
        let id = Uuid::new_v4();
        assert_eq!(JwtKeys::session_id(&claims(serde_json::json!({"session_id": id.to_string()}))).unwrap(), Some(id));
        let err = JwtKeys::session_id(&claims(serde_json::json!({"session_id": "nope"}))).unwrap_err();
        assert_eq!((err.kind, err.code), (crate::error::ErrorKind::Forbidden, ErrorCode::BadJwt));
        assert_eq!(err.msg, "invalid claim: session_id claim must be a UUID");
    }

    fn with_key_set(alg: Algorithm) -> (JwtKeys, Vec<crate::jwt_keys::ConfiguredKey>) {
        let mut s = Settings::for_tests();
        let set = crate::jwt_keys::generate(alg).unwrap();
        s.jwt.keys = crate::jwt_keys::parse_key_set(&set.to_string()).unwrap();
        s.jwt.key_id = "legacy".into();
        (JwtKeys::new(&s.jwt), s.jwt.keys)
    }

    #[test]
    fn the_signing_key_signs_and_kid_picks_the_verifier() {
        let (k, keys) = with_key_set(Algorithm::ES256);
        let token = k.sign(&serde_json::json!({"role": "authenticated"})).unwrap();
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!((header.alg, header.kid.as_deref()), (Algorithm::ES256, Some(keys[0].kid.as_str())));
        assert!(k.verify(&token).is_ok());
        assert_eq!(k.valid_methods(), vec![Algorithm::ES256, Algorithm::HS256]);

        let secret = Settings::for_tests().jwt.secret;
        let hs = |kid: Option<&str>| {
            let mut h = Header::new(Algorithm::HS256);
            h.kid = kid.map(str::to_owned);
            jsonwebtoken::encode(
                &h,
                &serde_json::json!({"role": "service_role"}),
                &EncodingKey::from_secret(secret.expose().as_bytes()),
            )
            .unwrap()
        };
        // No kid, GOTRUE_JWT_KEY_ID, or an unknown kid: HS256 falls back to the secret (GoTrue).
        for kid in [None, Some("legacy"), Some("unknown")] {
            assert!(k.verify(&hs(kid)).is_ok(), "{kid:?}");
        }
        // The kid of the EC key with an HS256 token signed by the secret: that key is ES256 only.
        let err = k.verify(&hs(Some(&keys[0].kid))).unwrap_err();
        assert_eq!(err.code, ErrorCode::BadJwt);
        assert!(err.msg.contains("signing method is not allowed"), "{}", err.msg);
        // An ES256 token with no kid has no key to check it.
        let mut h = Header::new(Algorithm::ES256);
        h.kid = None;
        let unnamed =
            jsonwebtoken::encode(&h, &serde_json::json!({"role": "service_role"}), keys[0].encoding_key()).unwrap();
        assert!(k.verify(&unnamed).unwrap_err().msg.contains("unrecognized JWT kid"));
    }

    #[test]
    fn valid_methods_restrict_the_accepted_algorithms() {
        let mut s = Settings::for_tests();
        s.jwt.valid_methods = vec![Algorithm::ES256];
        let set = crate::jwt_keys::generate(Algorithm::ES256).unwrap();
        s.jwt.keys = crate::jwt_keys::parse_key_set(&set.to_string()).unwrap();
        let k = JwtKeys::new(&s.jwt);
        assert!(k.verify(&k.sign(&serde_json::json!({"role": "authenticated"})).unwrap()).is_ok());
        let hs = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"role": "service_role"}),
            &EncodingKey::from_secret(s.jwt.secret.expose().as_bytes()),
        )
        .unwrap();
        assert!(k.verify(&hs).unwrap_err().msg.contains("signing method HS256 is invalid"));
        assert_eq!(k.valid_methods(), vec![Algorithm::ES256]);
    }
}
