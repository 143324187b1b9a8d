//! `GOTRUE_JWT_KEYS` and `GOTRUE_JWT_VALID_METHODS` → [`JwtSettings`] `keys` / `valid_methods`.
//!
//! `GOTRUE_JWT_KEYS` is a JSON array of private JWKs (`ferrotrue keys generate` prints one);
//! exactly one has `sign` in its `key_ops`. `GOTRUE_JWT_VALID_METHODS` is a comma list of the
//! `alg` values presented tokens may use; unset, it is the keys' algorithms plus HS256 (the
//! `GOTRUE_JWT_SECRET` keeps verifying the `anon` / `service_role` keys).

use ferrotrue_actors::jwt_keys;
use ferrotrue_actors::settings::JwtSettings;
use std::collections::HashMap;

/// Reads both variables into `jwt`; every problem is one line naming its variable.
pub fn read(vars: &HashMap<String, String>, jwt: &mut JwtSettings) -> Vec<String> {
    let mut errors = Vec::new();
    let raw = |name: &str| vars.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    if let Some(json) = raw("GOTRUE_JWT_KEYS") {
        match jwt_keys::parse_key_set(json) {
            Ok(keys) => jwt.keys = keys,
            Err(e) => errors.push(format!("GOTRUE_JWT_KEYS: {e}")),
        }
    }
    if let Some(list) = raw("GOTRUE_JWT_VALID_METHODS") {
        let mut methods = Vec::new();
        for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match jwt_keys::parse_alg(name) {
                Some(alg) if !methods.contains(&alg) => methods.push(alg),
                Some(_) => {}
                None => errors.push(format!(
                    "GOTRUE_JWT_VALID_METHODS: {name:?} is not a supported algorithm (HS256, RS256, ES256, EdDSA)"
                )),
            }
        }
        if let Some(signing) = jwt.keys.iter().find(|k| k.sign) {
            if !methods.is_empty() && !methods.contains(&signing.alg) {
                errors.push(format!(
                    "GOTRUE_JWT_VALID_METHODS does not include {}, the algorithm of the signing key: \
                     the server could not verify its own tokens",
                    jwt_keys::alg_name(signing.alg)
                ));
            }
        }
        jwt.valid_methods = methods;
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrotrue_actors::crypto::Secret;
    use ferrotrue_actors::settings::Settings;

    fn read_vars(pairs: &[(&str, &str)]) -> (JwtSettings, Vec<String>) {
        let vars: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect();
        let mut jwt = Settings::defaults(Secret("s".into())).jwt;
        let errors = read(&vars, &mut jwt);
        (jwt, errors)
    }

    #[test]
    fn keys_and_methods() {
        let set = jwt_keys::generate(jsonwebtoken::Algorithm::ES256).unwrap().to_string();
        let (jwt, errors) = read_vars(&[("GOTRUE_JWT_KEYS", &set)]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(jwt.keys.len(), 1);
        assert!(jwt.valid_methods.is_empty());
        let (jwt, errors) = read_vars(&[("GOTRUE_JWT_KEYS", &set), ("GOTRUE_JWT_VALID_METHODS", "ES256, ES256")]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(jwt.valid_methods, vec![jsonwebtoken::Algorithm::ES256]);
        let (_, errors) = read_vars(&[("GOTRUE_JWT_KEYS", &set), ("GOTRUE_JWT_VALID_METHODS", "HS256")]);
        assert!(errors[0].contains("ES256"), "{errors:?}");
        let (_, errors) = read_vars(&[("GOTRUE_JWT_VALID_METHODS", "none")]);
        assert!(errors[0].starts_with("GOTRUE_JWT_VALID_METHODS"), "{errors:?}");
        let (_, errors) = read_vars(&[("GOTRUE_JWT_KEYS", "[{]")]);
        assert!(errors[0].starts_with("GOTRUE_JWT_KEYS"), "{errors:?}");
    }
}
