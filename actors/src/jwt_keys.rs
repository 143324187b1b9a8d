//! Signing keys from `GOTRUE_JWT_KEYS` (a JSON array of private JWKs, as GoTrue's
//! `conf/jwk.go`): RSA → RS256, EC P-256 → ES256, OKP Ed25519 → EdDSA, oct → HS256. The key whose
//! `key_ops` holds `sign` signs (exactly one); every key verifies the tokens whose header names its
//! `kid`, which is what makes rotation work (add the next key, move `sign`, drop the old one).
//!
//! Private JWK members are turned into the DER documents `jsonwebtoken` takes (PKCS#1 for RSA,
//! PKCS#8 for EC and Ed25519), and every key is proven at load time by signing a probe and
//! verifying it with the public half, so a key whose halves disagree stops start-up instead of
//! failing the first sign-in. Key material never appears in an error or in `Debug`.

use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::Deserialize;
use serde_json::{json, Value};
use std::fmt;

/// One configured key: its `kid`, algorithm, whether it signs, and both halves.
#[derive(Clone)]
pub struct ConfiguredKey {
    pub kid: String,
    pub alg: Algorithm,
    /// `key_ops` contains `sign`.
    pub sign: bool,
    /// The public JWK published in `/.well-known/jwks.json`; `None` for `oct` keys.
    pub public: Option<Value>,
    pub(crate) encoding: EncodingKey,
    pub(crate) decoding: DecodingKey,
}

impl fmt::Debug for ConfiguredKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfiguredKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("sign", &self.sign)
            .finish_non_exhaustive()
    }
}

impl ConfiguredKey {
    /// The private half, for tools and tests that sign their own tokens.
    pub fn encoding_key(&self) -> &EncodingKey {
        &self.encoding
    }
}

/// The algorithms ferrotrue signs and verifies with.
pub const SUPPORTED: &[Algorithm] = &[Algorithm::HS256, Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// `"RS256"` → [`Algorithm::RS256`], for the algorithms in [`SUPPORTED`] only.
pub fn parse_alg(name: &str) -> Option<Algorithm> {
    SUPPORTED.iter().copied().find(|a| alg_name(*a) == name)
}

/// The JOSE name of an algorithm.
pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

/// The members of a private JWK we read; others are ignored (as jwx does).
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    d: Option<String>,
    n: Option<String>,
    e: Option<String>,
    p: Option<String>,
    q: Option<String>,
    dp: Option<String>,
    dq: Option<String>,
    qi: Option<String>,
    k: Option<String>,
}

/// Parses `GOTRUE_JWT_KEYS`. Errors say which key (by position and `kid`) and what is wrong,
/// never a key's value.
pub fn parse_key_set(json: &str) -> Result<Vec<ConfiguredKey>, String> {
    let raw: Vec<Value> = serde_json::from_str(json)
        .map_err(|_| "is not a JSON array of JWKs (e.g. `[{\"kty\":\"EC\",...}]`)".to_owned())?;
    let mut keys: Vec<ConfiguredKey> = Vec::with_capacity(raw.len());
    for (i, value) in raw.into_iter().enumerate() {
        let jwk: RawJwk = serde_json::from_value(value).map_err(|_| format!("key #{}: is not a JWK object", i + 1))?;
        let label = match jwk.kid.as_deref() {
            Some(kid) => format!("key #{} (kid {kid:?})", i + 1),
            None => format!("key #{}", i + 1),
        };
        let key = parse_key(jwk).map_err(|e| format!("{label}: {e}"))?;
        if keys.iter().any(|k| k.kid == key.kid) {
            return Err(format!("{label}: the kid is used by another key"));
        }
        keys.push(key);
    }
    match keys.iter().filter(|k| k.sign).count() {
        0 => Err("no signing key: exactly one key must have \"sign\" in its key_ops".into()),
        1 => Ok(keys),
        _ => Err("multiple signing keys: exactly one key may have \"sign\" in its key_ops".into()),
    }
}

fn b64(field: &str, value: Option<&str>) -> Result<Vec<u8>, String> {
    let v = value.ok_or_else(|| format!("missing \"{field}\""))?;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v.trim_end_matches('='))
        .map_err(|_| format!("\"{field}\" is not base64url"))
}

fn parse_key(jwk: RawJwk) -> Result<ConfiguredKey, String> {
    let kid = jwk.kid.clone().filter(|k| !k.is_empty()).ok_or("missing \"kid\"")?;
    let kty = jwk.kty.as_deref().ok_or("missing \"kty\"")?;
    let ops = jwk.key_ops.clone().unwrap_or_default();
    if let Some(op) = ops.iter().find(|op| !matches!(op.as_str(), "sign" | "verify")) {
        return Err(format!("key_ops {op:?} is not supported (use \"sign\" and/or \"verify\")"));
    }
    let sign = ops.iter().any(|op| op == "sign");
    let (alg, encoding, decoding, public) = match kty {
        "RSA" => {
            let n = b64("n", jwk.n.as_deref())?;
            let e = b64("e", jwk.e.as_deref())?;
            if strip_zeros(&n).len() < 256 {
                return Err("RSA keys must be at least 2048 bits".into());
            }
            let parts = ["d", "p", "q", "dp", "dq", "qi"];
            let values = [&jwk.d, &jwk.p, &jwk.q, &jwk.dp, &jwk.dq, &jwk.qi];
            let mut der = der_uint(&[0]);
            der.extend(der_uint(&n));
            der.extend(der_uint(&e));
            for (name, value) in parts.iter().zip(values) {
                der.extend(der_uint(&b64(name, value.as_deref()).map_err(private_hint)?));
            }
            let pkcs1 = der_tlv(0x30, &der);
            let public = json!({"kty": "RSA", "n": jwk.n, "e": jwk.e});
            (
                Algorithm::RS256,
                EncodingKey::from_rsa_der(&pkcs1),
                DecodingKey::from_rsa_raw_components(&n, &e),
                Some(public),
            )
        }
        "EC" => {
            match jwk.crv.as_deref() {
                Some("P-256") => {}
                Some(other) => return Err(format!("EC curve {other:?} is not supported (use P-256)")),
                None => return Err("missing \"crv\"".into()),
            }
            let x = b64("x", jwk.x.as_deref())?;
            let y = b64("y", jwk.y.as_deref())?;
            let d = b64("d", jwk.d.as_deref()).map_err(private_hint)?;
            if x.len() != 32 || y.len() != 32 || d.len() != 32 {
                return Err("P-256 members x, y and d must be 32 bytes each".into());
            }
            let mut point = vec![0x00, 0x04];
            point.extend(&x);
            point.extend(&y);
            let mut inner = der_uint(&[1]);
            inner.extend(der_tlv(0x04, &d));
            inner.extend(der_tlv(0xa1, &der_tlv(0x03, &point)));
            let mut pkcs8 = der_uint(&[0]);
            pkcs8.extend(der_tlv(0x30, &[OID_EC_PUBLIC_KEY, OID_P256].concat()));
            pkcs8.extend(der_tlv(0x04, &der_tlv(0x30, &inner)));
            let public = json!({"kty": "EC", "crv": "P-256", "x": jwk.x, "y": jwk.y});
            let decoding = DecodingKey::from_ec_components(
                jwk.x.as_deref().unwrap_or_default(),
                jwk.y.as_deref().unwrap_or_default(),
            )
            .map_err(|_| "x/y are not a P-256 point".to_owned())?;
            (Algorithm::ES256, EncodingKey::from_ec_der(&der_tlv(0x30, &pkcs8)), decoding, Some(public))
        }
        "OKP" => {
            match jwk.crv.as_deref() {
                Some("Ed25519") => {}
                Some(other) => return Err(format!("OKP curve {other:?} is not supported (use Ed25519)")),
                None => return Err("missing \"crv\"".into()),
            }
            let x = b64("x", jwk.x.as_deref())?;
            let d = b64("d", jwk.d.as_deref()).map_err(private_hint)?;
            if x.len() != 32 || d.len() != 32 {
                return Err("Ed25519 members x and d must be 32 bytes each".into());
            }
            let mut pkcs8 = der_uint(&[0]);
            pkcs8.extend(der_tlv(0x30, OID_ED25519));
            pkcs8.extend(der_tlv(0x04, &der_tlv(0x04, &d)));
            let public = json!({"kty": "OKP", "crv": "Ed25519", "x": jwk.x});
            let decoding = DecodingKey::from_ed_components(jwk.x.as_deref().unwrap_or_default())
                .map_err(|_| "x is not an Ed25519 public key".to_owned())?;
            (Algorithm::EdDSA, EncodingKey::from_ed_der(&der_tlv(0x30, &pkcs8)), decoding, Some(public))
        }
        "oct" => {
            let k = b64("k", jwk.k.as_deref())?;
            if k.is_empty() {
                return Err("\"k\" is empty".into());
            }
            (Algorithm::HS256, EncodingKey::from_secret(&k), DecodingKey::from_secret(&k), None)
        }
        other => return Err(format!("kty {other:?} is not supported (use RSA, EC, OKP or oct)")),
    };
    if let Some(declared) = jwk.alg.as_deref() {
        if declared != alg_name(alg) {
            return Err(format!("alg {declared:?} does not fit a {kty} key (ferrotrue uses {})", alg_name(alg)));
        }
    }
    let public = public.map(|p| with_members(p, &kid, alg, &["verify"]));
    let key = ConfiguredKey { kid, alg, sign, public, encoding, decoding };
    probe(&key)?;
    Ok(key)
}

fn private_hint(e: String) -> String {
    format!("{e} (GOTRUE_JWT_KEYS holds private keys; `ferrotrue keys generate` makes one)")
}

/// Signs and verifies a probe: proves the private half is well formed and matches the public one.
fn probe(key: &ConfiguredKey) -> Result<(), String> {
    let token = jsonwebtoken::encode(&Header::new(key.alg), &json!({"probe": true}), &key.encoding)
        .map_err(|_| "the private key is not valid or does not match its public members".to_owned())?;
    let mut validation = Validation::new(key.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    jsonwebtoken::decode::<Value>(&token, &key.decoding, &validation)
        .map(|_| ())
        .map_err(|_| "the public members do not match the private key".to_owned())
}

/// `/.well-known/jwks.json`: the public halves, never `oct` keys nor private members.
pub fn public_jwks(keys: &[ConfiguredKey]) -> Value {
    json!({"keys": keys.iter().filter_map(|k| k.public.clone()).collect::<Vec<_>>()})
}

/// A fresh key set for `GOTRUE_JWT_KEYS`: one private key that signs and verifies, with a random
/// `kid`. `alg` is ES256 (default), RS256 or EdDSA.
pub fn generate(alg: Algorithm) -> Result<Value, String> {
    use aws_lc_rs::encoding::{AsBigEndian, AsDer};
    use aws_lc_rs::signature::KeyPair as _;
    let enc = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let kid = uuid::Uuid::new_v4().to_string();
    let fail = |_| "key generation failed".to_owned();
    let key = match alg {
        Algorithm::ES256 => {
            let pair =
                aws_lc_rs::signature::EcdsaKeyPair::generate(&aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING)
                    .map_err(fail)?;
            let d =
                AsBigEndian::<aws_lc_rs::encoding::EcPrivateKeyBin>::as_be_bytes(&pair.private_key()).map_err(fail)?;
            let point = pair.public_key().as_ref().to_vec(); // 0x04 || x || y
            json!({"kty": "EC", "crv": "P-256", "x": enc(&point[1..33]), "y": enc(&point[33..65]), "d": enc(d.as_ref())})
        }
        Algorithm::EdDSA => {
            let pair = aws_lc_rs::signature::Ed25519KeyPair::generate().map_err(fail)?;
            let seed = pair.seed().map_err(fail)?;
            let d = AsBigEndian::<aws_lc_rs::encoding::Curve25519SeedBin>::as_be_bytes(&seed).map_err(fail)?;
            json!({"kty": "OKP", "crv": "Ed25519", "x": enc(pair.public_key().as_ref()), "d": enc(d.as_ref())})
        }
        Algorithm::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(fail)?;
            let pkcs8 = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).map_err(fail)?;
            let ints = rsa_ints_from_pkcs8(pkcs8.as_ref()).ok_or("key generation produced an unexpected encoding")?;
            let names = ["n", "e", "d", "p", "q", "dp", "dq", "qi"];
            let mut obj = serde_json::Map::new();
            obj.insert("kty".into(), json!("RSA"));
            for (name, value) in names.iter().zip(ints.iter().skip(1)) {
                obj.insert((*name).into(), json!(enc(strip_zeros(value))));
            }
            Value::Object(obj)
        }
        other => return Err(format!("{} keys are not generated (use ES256, RS256 or EdDSA)", alg_name(other))),
    };
    Ok(json!([with_members(key, &kid, alg, &["sign", "verify"])]))
}

/// Adds `kid`, `alg`, `use: "sig"` and `key_ops` to a JWK object.
fn with_members(mut jwk: Value, kid: &str, alg: Algorithm, ops: &[&str]) -> Value {
    if let Value::Object(obj) = &mut jwk {
        obj.insert("kid".into(), json!(kid));
        obj.insert("alg".into(), json!(alg_name(alg)));
        obj.insert("use".into(), json!("sig"));
        obj.insert("key_ops".into(), json!(ops));
    }
    jwk
}

const OID_EC_PUBLIC_KEY: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const OID_P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OID_ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

fn strip_zeros(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[start..]
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let len_bytes = strip_zeros(&bytes);
        out.push(0x80 | len_bytes.len() as u8);
        out.extend(len_bytes);
    }
    out.extend(content);
    out
}

/// A DER INTEGER from an unsigned big-endian value.
fn der_uint(value: &[u8]) -> Vec<u8> {
    let v = strip_zeros(value);
    let mut content = Vec::with_capacity(v.len() + 1);
    if v.is_empty() || v[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend(v);
    der_tlv(0x02, &content)
}

/// Reads one TLV: (tag, content, rest).
fn der_read(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | b as usize);
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// PKCS#8 → the nine INTEGERs of the PKCS#1 RSAPrivateKey inside (version, n, e, d, p, q, dp, dq, qi).
fn rsa_ints_from_pkcs8(der: &[u8]) -> Option<Vec<&[u8]>> {
    let (_, outer, _) = der_read(der)?;
    let (_, _version, rest) = der_read(outer)?;
    let (_, _alg, rest) = der_read(rest)?;
    let (tag, octets, _) = der_read(rest)?;
    if tag != 0x04 {
        return None;
    }
    let (_, mut seq, _) = der_read(octets)?;
    let mut ints = Vec::with_capacity(9);
    while !seq.is_empty() && ints.len() < 9 {
        let (tag, value, rest) = der_read(seq)?;
        if tag != 0x02 {
            return None;
        }
        ints.push(value);
        seq = rest;
    }
    (ints.len() == 9).then_some(ints)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(alg: Algorithm) -> Vec<ConfiguredKey> {
        let set = generate(alg).unwrap();
        parse_key_set(&set.to_string()).unwrap()
    }

    #[test]
    fn generated_keys_load_sign_and_publish_only_public_members() {
        for alg in [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA] {
            let keys = one(alg);
            assert_eq!(keys.len(), 1);
            assert!(keys[0].sign);
            assert_eq!(keys[0].alg, alg);
            let jwks = public_jwks(&keys);
            let published = &jwks["keys"][0];
            assert_eq!(published["alg"], alg_name(alg));
            assert_eq!(published["kid"], keys[0].kid.as_str());
            assert_eq!(published["use"], "sig");
            assert_eq!(published["key_ops"], json!(["verify"]));
            for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
                assert!(published.get(private).is_none(), "{alg:?} leaks {private}");
            }
        }
    }

    #[test]
    fn mismatched_halves_and_bad_sets_are_refused_without_echoing_material() {
        let a = generate(Algorithm::ES256).unwrap();
        let b = generate(Algorithm::ES256).unwrap();
        let mut mixed = a[0].clone();
        mixed["x"] = b[0]["x"].clone();
        mixed["y"] = b[0]["y"].clone();
        let err = parse_key_set(&json!([mixed]).to_string()).unwrap_err();
        assert!(err.contains("match"), "{err}");
        let d = a[0]["d"].as_str().unwrap();
        assert!(!err.contains(d));
        let mut two = a.clone();
        two.as_array_mut().unwrap().push(b[0].clone());
        assert!(parse_key_set(&two.to_string()).unwrap_err().contains("multiple signing keys"));
        assert!(parse_key_set("[]").unwrap_err().contains("no signing key"));
        assert!(parse_key_set("{").unwrap_err().contains("JSON"));
        let oct = json!([{"kty": "oct", "kid": "h", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0", "key_ops": ["sign"]}]);
        let keys = parse_key_set(&oct.to_string()).unwrap();
        assert_eq!(public_jwks(&keys), json!({"keys": []}));
    }

    #[test]
    fn der_lengths_round_trip() {
        for len in [0usize, 1, 127, 128, 255, 256, 70000] {
            let content = vec![7u8; len];
            let tlv = der_tlv(0x04, &content);
            let (tag, read, rest) = der_read(&tlv).unwrap();
            assert_eq!((tag, read.len(), rest.len()), (0x04, len, 0));
        }
        assert_eq!(der_uint(&[0x80]), vec![0x02, 0x02, 0x00, 0x80]);
        assert_eq!(der_uint(&[0, 0, 1]), vec![0x02, 0x01, 0x01]);
    }
}
