//! RSA signing keys of the simulated token issuers (the identity platform's id_tokens and the
//! Bot Framework channel's tokens), published as a JWKS.
//!
//! Each key is a 2048-bit RSA key generated at start with a self-signed certificate, so its JWK
//! carries `x5c` and an `x5t` (base64url SHA-1 of the certificate), and its `kid` equals its
//! `x5t` as the identity platform's keys do. Tokens are signed RS256: RSA PKCS#1 v1.5 over
//! SHA-256 of `b64url(header).b64url(payload)`.
//!
//! Tests forge tokens with a key that is not published ([`SigningKey::generate`] then
//! [`SigningKey::with_kid`] to name a published kid) and rotate keys with [`KeySet::rotate`].

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::x509::{X509, X509NameBuilder};
use serde_json::{Map, Value};

use crate::error::SimError;

fn key_error(e: &openssl::error::ErrorStack) -> SimError {
    SimError::Config(format!("cannot make a signing key: {e}"))
}

struct KeyMaterial {
    pkey: PKey<Private>,
    n: String,
    e: String,
    x5t: String,
    x5c: String,
}

/// One RSA signing key and the `kid` it signs under. Cloning shares the key material.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    material: Arc<KeyMaterial>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Generates a 2048-bit RSA key and a self-signed certificate with common name `subject`.
    pub fn generate(subject: &str) -> Result<Self, SimError> {
        let rsa = Rsa::generate(2048).map_err(|e| key_error(&e))?;
        let n = URL_SAFE_NO_PAD.encode(rsa.n().to_vec());
        let e = URL_SAFE_NO_PAD.encode(rsa.e().to_vec());
        let pkey = PKey::from_rsa(rsa).map_err(|e| key_error(&e))?;
        let cert = self_signed(&pkey, subject).map_err(|e| key_error(&e))?;
        let der = cert.to_der().map_err(|e| key_error(&e))?;
        let x5t = URL_SAFE_NO_PAD.encode(openssl::sha::sha1(&der));
        let material = KeyMaterial { pkey, n, e, x5t: x5t.clone(), x5c: STANDARD.encode(&der) };
        Ok(Self { kid: x5t, material: Arc::new(material) })
    }

    /// The key id tokens name in their header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The same key material under another `kid`: a forger that names a published key.
    pub fn with_kid(&self, kid: &str) -> Self {
        Self { kid: kid.to_owned(), material: self.material.clone() }
    }

    /// The public key as a JWK: `kty`, `use`, `kid`, `x5t`, `n`, `e`, `x5c`.
    pub fn jwk(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("kty".into(), "RSA".into());
        m.insert("use".into(), "sig".into());
        m.insert("kid".into(), self.kid.clone().into());
        m.insert("x5t".into(), self.material.x5t.clone().into());
        m.insert("n".into(), self.material.n.clone().into());
        m.insert("e".into(), self.material.e.clone().into());
        m.insert("x5c".into(), Value::Array(vec![self.material.x5c.clone().into()]));
        m
    }

    /// The public key in PEM (SubjectPublicKeyInfo), for tests that verify tokens themselves.
    pub fn public_key_pem(&self) -> Result<Vec<u8>, SimError> {
        self.material.pkey.public_key_to_pem().map_err(|e| key_error(&e))
    }

    /// A compact JWS of `claims` with header `{"typ":"JWT","alg":"RS256","x5t":…,"kid":…}`.
    pub fn sign(&self, claims: &Value) -> Result<String, SimError> {
        let header = serde_json::json!({ "typ": "JWT", "alg": "RS256", "x5t": self.kid, "kid": self.kid });
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut signer = Signer::new(MessageDigest::sha256(), &self.material.pkey).map_err(|e| key_error(&e))?;
        signer.update(input.as_bytes()).map_err(|e| key_error(&e))?;
        let sig = signer.sign_to_vec().map_err(|e| key_error(&e))?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }
}

fn self_signed(pkey: &PKey<Private>, subject: &str) -> Result<X509, openssl::error::ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("CN", subject)?;
    let name = name.build();
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = Asn1Integer::from_bn(&serial)?;
    let mut b = X509::builder()?;
    b.set_version(2)?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(pkey)?;
    let not_before = Asn1Time::days_from_now(0)?;
    let not_after = Asn1Time::days_from_now(730)?;
    b.set_not_before(&not_before)?;
    b.set_not_after(&not_after)?;
    b.sign(pkey, MessageDigest::sha256())?;
    Ok(b.build())
}

#[derive(Debug)]
struct KeySetInner {
    active: SigningKey,
    /// Published keys, newest first; the active key is always among them.
    published: Vec<SigningKey>,
}

/// An issuer's keys: the one it signs with and the ones its JWKS publishes. Cloning shares it.
#[derive(Clone, Debug)]
pub struct KeySet {
    subject: String,
    inner: Arc<Mutex<KeySetInner>>,
}

impl KeySet {
    /// One freshly generated key, active and published.
    pub fn generate(subject: &str) -> Result<Self, SimError> {
        let key = SigningKey::generate(subject)?;
        let inner = KeySetInner { active: key.clone(), published: vec![key] };
        Ok(Self { subject: subject.to_owned(), inner: Arc::new(Mutex::new(inner)) })
    }

    fn lock(&self) -> MutexGuard<'_, KeySetInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The key new tokens are signed with.
    pub fn active(&self) -> SigningKey {
        self.lock().active.clone()
    }

    /// The published keys, newest first.
    pub fn published(&self) -> Vec<SigningKey> {
        self.lock().published.clone()
    }

    /// Generates a new key, publishes it first in the JWKS and signs with it from now on. The
    /// previous keys stay published until [`KeySet::retire`].
    pub fn rotate(&self) -> Result<SigningKey, SimError> {
        let key = SigningKey::generate(&self.subject)?;
        let mut inner = self.lock();
        inner.published.insert(0, key.clone());
        inner.active = key.clone();
        Ok(key)
    }

    /// Removes a key from the JWKS (the active key cannot be retired). Returns whether it was
    /// published.
    pub fn retire(&self, kid: &str) -> bool {
        let mut inner = self.lock();
        if inner.active.kid() == kid {
            return false;
        }
        let before = inner.published.len();
        inner.published.retain(|k| k.kid() != kid);
        inner.published.len() != before
    }

    /// Signs `claims` with the active key.
    pub fn sign(&self, claims: &Value) -> Result<String, SimError> {
        self.active().sign(claims)
    }

    /// The JWKS document `{"keys":[…]}`; `extra` adds fields to every key (`issuer`,
    /// `endorsements`, ...).
    pub fn jwks(&self, extra: &Map<String, Value>) -> Value {
        let keys: Vec<Value> = self
            .published()
            .iter()
            .map(|k| {
                let mut jwk = k.jwk();
                for (name, value) in extra {
                    jwk.insert(name.clone(), value.clone());
                }
                Value::Object(jwk)
            })
            .collect();
        serde_json::json!({ "keys": keys })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use openssl::sign::Verifier;

    use super::*;

    #[test]
    fn signs_rs256_that_the_public_key_verifies() {
        let key = SigningKey::generate("test issuer").unwrap();
        assert_eq!(key.kid().len(), 27);
        let token = key.sign(&serde_json::json!({ "iss": "x" })).unwrap();
        let (input, sig) = token.rsplit_once('.').unwrap();
        let public = PKey::public_key_from_pem(&key.public_key_pem().unwrap()).unwrap();
        let mut v = Verifier::new(MessageDigest::sha256(), &public).unwrap();
        v.update(input.as_bytes()).unwrap();
        assert!(v.verify(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap());
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(input.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], key.kid());
    }

    #[test]
    fn rotation_publishes_the_new_key_first_and_keeps_the_old() {
        let set = KeySet::generate("t").unwrap();
        let old = set.active();
        let new = set.rotate().unwrap();
        assert_eq!(set.active().kid(), new.kid());
        let jwks = set.jwks(&Map::new());
        let kids: Vec<&str> = jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap()).collect();
        assert_eq!(kids, vec![new.kid(), old.kid()]);
        assert!(!set.retire(new.kid()));
        assert!(set.retire(old.kid()));
        assert_eq!(set.published().len(), 1);
    }
}
