//! The signed approval link: a single-use, expiring token naming one stage of one request and
//! the one approver it was sent to. grantline puts it in the approval page's URL
//! (`{public_url}/v1/approvals/{token}`) for approvers without Teams or Slack.
//!
//! Format (version 1): `v1.<payload>.<mac>`, both parts unpadded base64url, so the token is
//! URL-safe as is. `payload` is the JSON of [`LinkClaims`]; `mac` is HMAC-SHA256, keyed with
//! the deployment's link secret, over the ASCII text `v1.<payload>` (the version is signed
//! too). [`verify`] checks the shape, then the MAC in constant time, then the expiry; it never
//! reads a claim before the MAC matched. Single use is not the token's business: whoever
//! records a decision made with it burns its `nonce` atomically.

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The version prefix of the tokens [`issue`] makes.
pub const VERSION: &str = "v1";

/// Longest token [`verify`] reads (anything longer is malformed, not hashed).
pub const MAX_TOKEN_LEN: usize = 2048;

/// What a link says: which stage of which request it asks about, whom it is for, and until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkClaims {
    /// The request id (32 lowercase hex characters).
    pub request_id: String,
    /// The stage asked about, 0-based.
    pub stage: usize,
    /// The directory object id of the approver the link was sent to.
    pub approver: String,
    /// 128 random bits (32 hex characters): what a decision burns to make the link single use.
    pub nonce: String,
    /// When the link stops working, in milliseconds since the Unix epoch.
    pub exp_ms: u64,
}

impl LinkClaims {
    /// Claims with a fresh random nonce ([`new_nonce`]).
    pub fn new(request_id: &str, stage: usize, approver: &str, exp_ms: u64) -> Self {
        Self { request_id: request_id.to_owned(), stage, approver: approver.to_owned(), nonce: new_nonce(), exp_ms }
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// Not a token of a version this code reads, or not well-formed.
    #[error("the link is malformed")]
    Malformed,
    /// Well-formed, but the MAC does not match: tampered with, or made with another secret.
    #[error("the link's signature does not match")]
    BadSignature,
    /// Genuine, but past its expiry.
    #[error("the link has expired")]
    Expired,
}

impl LinkError {
    /// The stable code: `link.malformed`, `link.bad_signature`, `link.expired`.
    pub fn code(self) -> &'static str {
        match self {
            LinkError::Malformed => "link.malformed",
            LinkError::BadSignature => "link.bad_signature",
            LinkError::Expired => "link.expired",
        }
    }
}

/// 128 bits from the operating system's random source, as 32 lowercase hex characters.
///
/// Two version-4 UUIDs (244 random bits) are hashed together and the first 16 bytes kept.
pub fn new_nonce() -> String {
    let mut h = Sha256::new();
    h.update(uuid::Uuid::new_v4().as_bytes());
    h.update(uuid::Uuid::new_v4().as_bytes());
    hex::encode(&h.finalize()[..16])
}

fn mac(secret: &[u8], signed: &str) -> Hmac<Sha256> {
    // HMAC accepts a key of any length; the error arm cannot happen
    let mut m = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => <Hmac<Sha256> as Mac>::new(&Default::default()),
    };
    m.update(signed.as_bytes());
    m
}

/// Makes the token of `claims`, signed with `secret`.
pub fn issue(secret: &[u8], claims: &LinkClaims) -> String {
    let json = serde_json::json!({
        "request_id": claims.request_id,
        "stage": claims.stage,
        "approver": claims.approver,
        "nonce": claims.nonce,
        "exp_ms": claims.exp_ms,
    })
    .to_string();
    let signed = format!("{VERSION}.{}", b64url::encode(json.as_bytes()));
    let tag = mac(secret, &signed).finalize().into_bytes();
    format!("{signed}.{}", b64url::encode(&tag))
}

/// Splits a token into the signed text, the payload bytes and the MAC bytes.
fn split(token: &str) -> Result<(&str, Vec<u8>, Vec<u8>), LinkError> {
    if token.is_empty() || token.len() > MAX_TOKEN_LEN {
        return Err(LinkError::Malformed);
    }
    let (signed, tag) = token.rsplit_once('.').ok_or(LinkError::Malformed)?;
    let (version, payload) = signed.split_once('.').ok_or(LinkError::Malformed)?;
    if version != VERSION {
        return Err(LinkError::Malformed);
    }
    let payload = b64url::decode(payload).ok_or(LinkError::Malformed)?;
    let tag = b64url::decode(tag).ok_or(LinkError::Malformed)?;
    if payload.is_empty() || tag.len() != 32 {
        return Err(LinkError::Malformed);
    }
    Ok((signed, payload, tag))
}

/// Checks a token at `now_ms`: its shape, its MAC (constant time) and its expiry, in that order.
pub fn verify(secret: &[u8], token: &str, now_ms: u64) -> Result<LinkClaims, LinkError> {
    let (signed, payload, tag) = split(token)?;
    mac(secret, signed).verify_slice(&tag).map_err(|_| LinkError::BadSignature)?;
    let claims: LinkClaims = serde_json::from_slice(&payload).map_err(|_| LinkError::Malformed)?;
    if now_ms >= claims.exp_ms {
        return Err(LinkError::Expired);
    }
    Ok(claims)
}

/// The page a token opens: `{public_url}/v1/approvals/{token}` (for whoever sends links; the
/// approval page serves this route).
pub fn url(public_url: &str, token: &str) -> String {
    format!("{}/v1/approvals/{token}", public_url.trim().trim_end_matches('/'))
}

/// The claims a token carries, WITHOUT checking its MAC or expiry: only for telling a security
/// log which request a refused link named. Never authorize anything with it.
pub fn unverified_claims(token: &str) -> Option<LinkClaims> {
    let (_, payload, _) = split(token).ok()?;
    serde_json::from_slice(&payload).ok()
}

/// Unpadded base64url (RFC 4648 section 5), strict: no padding, no other characters, and the
/// unused bits of the last character must be zero, so every token has one spelling.
mod b64url {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

    pub fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            let chars = chunk.len() + 1;
            for i in 0..chars {
                let idx = (n >> (18 - 6 * i)) & 0x3f;
                out.push(char::from(ALPHABET[idx as usize]));
            }
        }
        out
    }

    fn value(c: u8) -> Option<u32> {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        Some(u32::from(v))
    }

    pub fn decode(text: &str) -> Option<Vec<u8>> {
        let bytes = text.as_bytes();
        if bytes.len() % 4 == 1 {
            return None;
        }
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3 + 2);
        for chunk in bytes.chunks(4) {
            let mut n = 0u32;
            for (i, c) in chunk.iter().enumerate() {
                n |= value(*c)? << (18 - 6 * i);
            }
            let full = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            let keep = chunk.len() - 1;
            // the bits past the last whole byte must be zero
            if full[keep..].iter().any(|b| *b != 0) && keep < 3 {
                return None;
            }
            out.extend_from_slice(&full[..keep]);
        }
        Some(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"link-secret-for-tests-0123456789abcdef";
    const NOW: u64 = 1_800_000_000_000;

    fn claims() -> LinkClaims {
        LinkClaims {
            request_id: "0190f5a4c1e27d6a9b3e4f5a6b7c8d9e".into(),
            stage: 1,
            approver: "10000000-0000-4000-8000-000000000002".into(),
            nonce: "00112233445566778899aabbccddeeff".into(),
            exp_ms: NOW + 3_600_000,
        }
    }

    #[test]
    fn round_trip_and_shape() {
        let c = claims();
        let t = issue(SECRET, &c);
        assert!(t.starts_with("v1."), "{t}");
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')), "{t}");
        assert_eq!(t.matches('.').count(), 2);
        assert_eq!(verify(SECRET, &t, NOW).unwrap(), c);
        assert_eq!(verify(SECRET, &t, c.exp_ms - 1).unwrap(), c);
        assert_eq!(issue(SECRET, &c), t, "the same claims make the same token");
        assert_eq!(unverified_claims(&t).unwrap(), c);
        assert_eq!(url("https://g.example.com/", &t), format!("https://g.example.com/v1/approvals/{t}"));
    }

    #[test]
    fn any_changed_character_is_refused() {
        let t = issue(SECRET, &claims());
        let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.";
        for i in 0..t.len() {
            for &c in alphabet {
                let mut b = t.clone().into_bytes();
                if b[i] == c {
                    continue;
                }
                b[i] = c;
                let forged = String::from_utf8(b).unwrap();
                let err = verify(SECRET, &forged, NOW).unwrap_err();
                assert!(matches!(err, LinkError::Malformed | LinkError::BadSignature), "{i} {forged}: {err:?}");
            }
        }
        // dropping or adding a character, too
        assert!(verify(SECRET, &t[..t.len() - 1], NOW).is_err());
        assert!(verify(SECRET, &format!("{t}A"), NOW).is_err());
        assert!(verify(SECRET, &format!("A{t}"), NOW).is_err());
    }

    #[test]
    fn a_changed_claim_with_the_old_mac_is_a_bad_signature() {
        let t = issue(SECRET, &claims());
        let mac = t.rsplit_once('.').unwrap().1;
        let mine = LinkClaims { approver: "10000000-0000-4000-8000-000000000004".into(), ..claims() };
        let other = issue(SECRET, &mine);
        let forged = format!("{}.{mac}", other.rsplit_once('.').unwrap().0);
        assert_eq!(verify(SECRET, &forged, NOW), Err(LinkError::BadSignature));
    }

    #[test]
    fn wrong_secret_is_a_bad_signature() {
        let t = issue(b"another-secret-another-secret-000000", &claims());
        assert_eq!(verify(SECRET, &t, NOW), Err(LinkError::BadSignature));
    }

    #[test]
    fn expired_at_and_after_exp() {
        let c = claims();
        let t = issue(SECRET, &c);
        assert_eq!(verify(SECRET, &t, c.exp_ms), Err(LinkError::Expired));
        assert_eq!(verify(SECRET, &t, c.exp_ms + 86_400_000), Err(LinkError::Expired));
        // an expired token with a bad MAC is a bad signature: nothing is read before the MAC
        let forged = format!("{}x", &t[..t.len() - 1]);
        assert!(matches!(verify(SECRET, &forged, c.exp_ms), Err(LinkError::BadSignature | LinkError::Malformed)));
    }

    #[test]
    fn malformed_tokens() {
        let t = issue(SECRET, &claims());
        let rest = t.strip_prefix("v1.").unwrap();
        for bad in [
            String::new(),
            "v1".into(),
            "v1..".into(),
            format!("v2.{rest}"),
            format!("V1.{rest}"),
            rest.to_owned(),
            format!("v1.{rest}="),
            format!("v1.{}", rest.replace('.', "..")),
            "v1.e30.AAAA".into(),
            "x".repeat(MAX_TOKEN_LEN + 1),
        ] {
            assert_eq!(verify(SECRET, &bad, NOW), Err(LinkError::Malformed), "{bad}");
        }
        // signed, but not claims
        let signed = format!("v1.{}", b64url::encode(b"{\"x\":1}"));
        let tag = mac(SECRET, &signed).finalize().into_bytes();
        assert_eq!(verify(SECRET, &format!("{signed}.{}", b64url::encode(&tag)), NOW), Err(LinkError::Malformed));
        assert_eq!(LinkError::Malformed.code(), "link.malformed");
        assert_eq!(LinkError::BadSignature.code(), "link.bad_signature");
        assert_eq!(LinkError::Expired.code(), "link.expired");
    }

    #[test]
    fn base64url_matches_rfc_4648_and_is_strict() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64url::encode(plain.as_bytes()), enc);
            assert_eq!(b64url::decode(enc).unwrap(), plain.as_bytes());
        }
        assert_eq!(b64url::encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64url::decode("-_8").unwrap(), [0xfb, 0xff]);
        assert!(b64url::decode("Zh").is_none(), "non-zero spare bits");
        assert!(b64url::decode("Zm9").is_none(), "non-zero spare bits");
        assert!(b64url::decode("Z").is_none());
        assert!(b64url::decode("Zg==").is_none());
        assert!(b64url::decode("Z+8v").is_none());
        for n in 0..64usize {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(b64url::decode(&b64url::encode(&bytes)).unwrap(), bytes);
        }
    }

    #[test]
    fn nonces_are_fresh_hex_of_128_bits() {
        let a = new_nonce();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_ne!(a, new_nonce());
        let c = LinkClaims::new("r", 0, "a", 5);
        assert_eq!(c.nonce.len(), 32);
        assert_eq!((c.request_id.as_str(), c.stage, c.approver.as_str(), c.exp_ms), ("r", 0, "a", 5));
    }
}
