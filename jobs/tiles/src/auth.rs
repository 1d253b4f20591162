//! Access to archives with an HS256 JWT: `Authorization: Bearer T` or `?token=T`. The token must
//! carry an `exp` (honoured); an `nbf` is honoured too. A claim (default `archives`) lists the
//! archives it opens: names, or patterns with `*` (`"team-a-*"`, `"*"`). A token without the
//! claim opens nothing.
//!
//! CloudTAK's tile routes check tokens the way its tile Lambda does ([`SigningAuth`]): a JWT
//! signed with `SigningSecret` (HS256, HS384 or HS512), given only as `?token=`, no `exp`
//! needed (one that is there is honoured). Resource tokens (`etl.<jwt>`) are refused. Public
//! archives open to any valid token; a profile archive `profile/USER/FILE` to a token with
//! `access: "profile"` and `email: USER`, or `file: "USER/FILE"` (a file shared by channel).

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// 401: no token, or one that is not valid.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a valid token that does not open this archive.
    #[error("the token does not grant access to archive {0:?}")]
    Forbidden(String),
}

#[derive(Clone)]
pub struct Auth {
    key: DecodingKey,
    validation: Validation,
    claim: String,
}

/// What a valid token opens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    patterns: Vec<String>,
}

impl Grant {
    /// Everything (auth is off).
    pub fn all() -> Grant {
        Grant {
            patterns: vec!["*".to_string()],
        }
    }

    pub fn allows(&self, archive: &str) -> bool {
        self.patterns.iter().any(|p| matches_pattern(p, archive))
    }

    pub fn check(&self, archive: &str) -> Result<(), Denied> {
        if self.allows(archive) {
            Ok(())
        } else {
            Err(Denied::Forbidden(archive.to_string()))
        }
    }
}

/// `*` matches any run of characters; everything else matches itself.
fn matches_pattern(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        // No '*' at all: exact match.
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl Auth {
    pub fn new(secret: &[u8], claim: &str) -> Result<Auth, String> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        // A little clock skew between the issuer and this server is normal; an hour is not.
        validation.leeway = 30;
        let key = DecodingKey::from_secret(secret).map_err(|e| format!("JWT secret: {e}"))?;
        Ok(Auth {
            key,
            validation,
            claim: claim.to_string(),
        })
    }

    /// Checks a token and returns what it opens.
    pub fn verify(&self, token: Option<&str>) -> Result<Grant, Denied> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(Denied::Unauthorized(
                "a token is required: send Authorization: Bearer <jwt> or ?token=<jwt>".into(),
            ));
        };
        let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(
            token,
            &self.key,
            &self.validation,
        )
        .map_err(|e| {
            Denied::Unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired".to_string(),
                ErrorKind::ImmatureSignature => {
                    "the token is not valid yet (its nbf is in the future)".to_string()
                }
                ErrorKind::InvalidSignature => "the token's signature is not valid".to_string(),
                ErrorKind::InvalidAlgorithm => "the token is not signed with HS256".to_string(),
                ErrorKind::MissingRequiredClaim(c) => format!("the token has no {c:?} claim"),
                _ => format!("the token is not valid: {e}"),
            })
        })?;
        let patterns = match data.claims.get(&self.claim) {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Grant { patterns })
    }
}

/// CloudTAK's token check (see the module docs).
#[derive(Clone)]
pub struct SigningAuth {
    key: DecodingKey,
    validation: Validation,
}

/// The claims of a valid CloudTAK token that decide access.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
pub struct SignedClaims {
    #[serde(default)]
    pub access: Option<Value>,
    #[serde(default)]
    pub email: Option<Value>,
    #[serde(default)]
    pub file: Option<Value>,
}

impl SignedClaims {
    /// Whether the token opens `profile/USER/FILE`: a profile token of the owner, or one that
    /// names the file.
    pub fn grants_profile(&self, user: &str, file: &str) -> bool {
        let is = |v: &Option<Value>, want: &str| v.as_ref().and_then(Value::as_str) == Some(want);
        is(&self.access, "profile")
            && (is(&self.email, user) || is(&self.file, &format!("{user}/{file}")))
    }
}

impl SigningAuth {
    pub fn new(secret: &[u8]) -> Result<SigningAuth, String> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];
        // CloudTAK's API mints tokens without `exp`; one that has it is still honoured.
        validation.set_required_spec_claims::<&str>(&[]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        validation.leeway = 30;
        let key = DecodingKey::from_secret(secret).map_err(|e| format!("SigningSecret: {e}"))?;
        Ok(SigningAuth { key, validation })
    }

    /// Checks a `?token=` and returns its claims.
    pub fn verify(&self, token: Option<&str>) -> Result<SignedClaims, Denied> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(Denied::Unauthorized(
                "Invalid Token: a token is required as ?token=<jwt>".into(),
            ));
        };
        if token.starts_with("etl.") {
            return Err(Denied::Unauthorized(
                "Invalid Token: resource tokens (etl.) do not open tiles".into(),
            ));
        }
        jsonwebtoken::decode::<SignedClaims>(token, &self.key, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| {
                Denied::Unauthorized(match e.kind() {
                    ErrorKind::ExpiredSignature => "Invalid Token: it has expired".to_string(),
                    ErrorKind::ImmatureSignature => {
                        "Invalid Token: it is not valid yet (nbf)".to_string()
                    }
                    ErrorKind::InvalidSignature => {
                        "Invalid Token: the signature is not valid".to_string()
                    }
                    ErrorKind::InvalidAlgorithm => {
                        "Invalid Token: not signed with HS256, HS384 or HS512".to_string()
                    }
                    _ => format!("Invalid Token: {e}"),
                })
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn token(secret: &[u8], claims: Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    }

    fn signed(alg: Algorithm, secret: &[u8], claims: Value) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn cloudtak_tokens() {
        let auth = SigningAuth::new(b"cloudtak-secret").unwrap();
        let claims = serde_json::json!({"access": "profile", "email": "alice@example.com"});
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let c = auth
                .verify(Some(&signed(alg, b"cloudtak-secret", claims.clone())))
                .unwrap();
            assert!(c.grants_profile("alice@example.com", "f1"), "{alg:?}");
            assert!(!c.grants_profile("bob@example.com", "f1"), "{alg:?}");
        }
        let good = signed(Algorithm::HS256, b"cloudtak-secret", claims.clone());
        assert!(matches!(
            auth.verify(Some(&format!("etl.{good}"))),
            Err(Denied::Unauthorized(m)) if m.contains("etl.")
        ));
        assert!(matches!(auth.verify(None), Err(Denied::Unauthorized(_))));
        let forged = signed(Algorithm::HS256, b"other", claims.clone());
        assert!(matches!(
            auth.verify(Some(&forged)),
            Err(Denied::Unauthorized(m)) if m.contains("signature")
        ));
        let expired = signed(
            Algorithm::HS256,
            b"cloudtak-secret",
            serde_json::json!({"access": "profile", "email": "a", "exp": now() - 3600}),
        );
        assert!(matches!(
            auth.verify(Some(&expired)),
            Err(Denied::Unauthorized(m)) if m.contains("expired")
        ));
        // The file grant: a token of another user naming the file, with profile access only.
        let shared = SignedClaims {
            access: Some("profile".into()),
            email: Some("carol@example.com".into()),
            file: Some("alice@example.com/f1".into()),
        };
        assert!(shared.grants_profile("alice@example.com", "f1"));
        assert!(!shared.grants_profile("alice@example.com", "f2"));
        let user = SignedClaims {
            access: Some("user".into()),
            ..shared.clone()
        };
        assert!(!user.grants_profile("carol@example.com", "f1"));
        assert!(!SignedClaims::default().grants_profile("", ""));
    }

    #[test]
    fn patterns() {
        assert!(matches_pattern("*", "anything"));
        assert!(matches_pattern("roads", "roads"));
        assert!(!matches_pattern("roads", "roads2"));
        assert!(matches_pattern("team-a-*", "team-a-roads"));
        assert!(!matches_pattern("team-a-*", "team-b-roads"));
        assert!(matches_pattern("*-2024", "roads-2024"));
        assert!(matches_pattern("a*c*e", "abcde"));
        assert!(!matches_pattern("a*c*e", "abde"));
        assert!(!matches_pattern("ab*ba", "aba"));
    }

    #[test]
    fn tokens() {
        let auth = Auth::new(b"secret", "archives").unwrap();
        let good = token(
            b"secret",
            serde_json::json!({"exp": now() + 600, "archives": ["roads", "team-*"]}),
        );
        let g = auth.verify(Some(&good)).unwrap();
        assert!(g.allows("roads") && g.allows("team-x") && !g.allows("rivers"));
        assert_eq!(
            g.check("rivers"),
            Err(Denied::Forbidden("rivers".to_string()))
        );

        let expired = token(
            b"secret",
            serde_json::json!({"exp": now() - 3600, "archives": "*"}),
        );
        assert_eq!(
            auth.verify(Some(&expired)),
            Err(Denied::Unauthorized("the token has expired".into()))
        );
        let wrong = token(
            b"other",
            serde_json::json!({"exp": now() + 600, "archives": "*"}),
        );
        assert!(
            matches!(auth.verify(Some(&wrong)), Err(Denied::Unauthorized(m)) if m.contains("signature"))
        );
        let no_exp = token(b"secret", serde_json::json!({"archives": "*"}));
        assert!(
            matches!(auth.verify(Some(&no_exp)), Err(Denied::Unauthorized(m)) if m.contains("exp"))
        );
        assert!(matches!(auth.verify(None), Err(Denied::Unauthorized(_))));
        assert!(matches!(
            auth.verify(Some("garbage")),
            Err(Denied::Unauthorized(_))
        ));
        // An unsigned token (alg "none") is never accepted, whatever it claims.
        let b64 = |v: serde_json::Value| {
            use base64::Engine;
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let unsigned = format!(
            "{}.{}.",
            b64(serde_json::json!({"alg": "none", "typ": "JWT"})),
            b64(serde_json::json!({"exp": now() + 600, "archives": "*"}))
        );
        assert!(matches!(
            auth.verify(Some(&unsigned)),
            Err(Denied::Unauthorized(_))
        ));
        // nbf: honoured, with the same 30 s leeway as exp.
        let early = token(
            b"secret",
            serde_json::json!({"exp": now() + 7200, "nbf": now() + 3600, "archives": "*"}),
        );
        assert!(
            matches!(auth.verify(Some(&early)), Err(Denied::Unauthorized(m)) if m.contains("not valid yet"))
        );
        let started = token(
            b"secret",
            serde_json::json!({"exp": now() + 600, "nbf": now() - 60, "archives": "*"}),
        );
        assert!(auth.verify(Some(&started)).unwrap().allows("roads"));
        let skewed = token(
            b"secret",
            serde_json::json!({"exp": now() + 600, "nbf": now() + 5, "archives": "*"}),
        );
        assert!(auth.verify(Some(&skewed)).is_ok(), "within the leeway");
        let no_claim = token(b"secret", serde_json::json!({"exp": now() + 600}));
        assert!(!auth.verify(Some(&no_claim)).unwrap().allows("roads"));
    }
}
