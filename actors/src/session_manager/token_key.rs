//! The server key refresh tokens are derived from.
//!
//! A raw refresh token is `base64url(HMAC-SHA256(K, session_id ‖ seq ‖ nonce)[..16])` (22
//! characters, like every token ferrotrue issues), where
//! `K = crypto::derive_key(GOTRUE_JWT_SECRET, "refresh-token key v1")`. The database keeps
//! only the token's SHA-256 digest plus `(session_id, seq, nonce)`, which give nothing without
//! `K`; with `K` the server can recompute the session's active token when a client replays its
//! parent. Look-up is always by digest, so changing the JWT secret does not end any session:
//! only the parent-replay shortcut falls back to minting a new child for tokens issued before.

use crate::crypto::{self, hmac_sha256 as hmac, Secret};
use base64::Engine;
use uuid::Uuid;

/// Domain-separation label: this key is used for nothing else.
const LABEL: &str = "refresh-token key v1";

/// `K` above. `Debug` never shows it.
#[derive(Clone)]
pub struct TokenKey([u8; 32]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<redacted>)")
    }
}

impl TokenKey {
    /// Derives the key from the JWT secret.
    pub fn derive(jwt_secret: &Secret) -> TokenKey {
        TokenKey(crypto::derive_key(jwt_secret, LABEL))
    }

    /// The raw token for a token identity.
    pub fn token(&self, session_id: Uuid, seq: u64, nonce: &[u8; 16]) -> String {
        let mac = hmac(&self.0, &[session_id.as_bytes(), &seq.to_be_bytes(), nonce]);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&mac[..16])
    }

    /// The raw token for an identity if it is the one whose digest is `digest` (false for
    /// migrated v1 tokens and for tokens issued under another JWT secret).
    pub fn rederive(&self, session_id: Uuid, seq: u64, nonce: &[u8; 16], digest: &[u8; 32]) -> Option<String> {
        let raw = self.token(session_id, seq, nonce);
        crypto::secure_eq(&crypto::sha256(raw.as_bytes()), digest).then_some(raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_key_and_identity_and_look_like_random_tokens() {
        let k = TokenKey::derive(&Secret("a-secret-that-is-long-enough-for-hs256".into()));
        let other = TokenKey::derive(&Secret("another-secret-long-enough-for-hs256!".into()));
        let (s, n) = (Uuid::new_v4(), [7u8; 16]);
        let t = k.token(s, 1, &n);
        assert_eq!(t.len(), crypto::random_token().len());
        assert_eq!(t, k.token(s, 1, &n), "deterministic");
        assert_ne!(t, k.token(s, 2, &n));
        assert_ne!(t, k.token(Uuid::new_v4(), 1, &n));
        assert_ne!(t, k.token(s, 1, &[8u8; 16]));
        assert_ne!(t, other.token(s, 1, &n));
        let digest = crypto::sha256(t.as_bytes());
        assert_eq!(k.rederive(s, 1, &n, &digest).as_deref(), Some(t.as_str()));
        assert_eq!(other.rederive(s, 1, &n, &digest), None);
        assert!(!format!("{k:?}").contains(&format!("{:?}", k.0)));
    }
}
