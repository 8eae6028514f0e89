//! JSON Web Tokens, verified with `jsonwebtoken`: HS256 with a shared secret, and/or RS256 or
//! ES256 (P-256) with a public key in PEM. Only the configured algorithms are accepted, each
//! with its own key: a token's header picks the key, so an `HS256` token is never checked
//! against the public key (algorithm confusion) and `alg: none` is no algorithm at all.
//!
//! Claims: `sub` (the user) and `exp` are required; `nbf` is checked when present; both with
//! the configured leeway (at most 5 s). `iss` and `aud` are checked when configured; a token
//! that carries an `aud` while no audience is configured is refused (RFC 7519 §4.1.3).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde::Deserialize;

use super::user::UserName;

/// Shortest HS256 secret: RFC 7518 §3.2 wants a key as long as the hash (256 bits).
pub const MIN_SECRET_BYTES: usize = 32;
/// The largest leeway accepted for `exp` and `nbf`.
pub const MAX_LEEWAY_SECS: u64 = 5;

/// JWT settings, as configured.
#[derive(Default)]
pub struct JwtSettings {
    pub secret: Option<Vec<u8>>,
    /// PEM text of an RSA or EC (P-256) public key.
    pub public_key_pem: Option<Vec<u8>>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    pub leeway_secs: u64,
}

pub struct JwtVerifier {
    hmac: Option<DecodingKey>,
    public: Option<(Algorithm, DecodingKey)>,
    issuer: Option<String>,
    audience: Option<String>,
    leeway_secs: u64,
}

/// Why a JWT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtError {
    /// Malformed, wrong algorithm, bad signature, bad claims.
    Invalid,
    Expired,
    NotYetValid,
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

/// Why the JWT settings were refused at start.
#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error(
        "AUTH_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes (HS256 needs a 256-bit key)"
    )]
    ShortSecret,
    #[error("AUTH_JWT_PUBLIC_KEY is neither an RSA nor an EC public key in PEM: {0}")]
    BadPublicKey(String),
    #[error("the JWT leeway may be at most {MAX_LEEWAY_SECS} seconds")]
    Leeway,
}

impl JwtVerifier {
    pub fn new(settings: JwtSettings) -> Result<Self, JwtConfigError> {
        if settings.leeway_secs > MAX_LEEWAY_SECS {
            return Err(JwtConfigError::Leeway);
        }
        let hmac = match settings.secret {
            Some(secret) if secret.len() < MIN_SECRET_BYTES => {
                return Err(JwtConfigError::ShortSecret);
            }
            Some(secret) => {
                Some(DecodingKey::from_secret(&secret).map_err(|_| JwtConfigError::ShortSecret)?)
            }
            None => None,
        };
        let public = match settings.public_key_pem {
            None => None,
            Some(pem) => Some(match DecodingKey::from_rsa_pem(&pem) {
                Ok(key) => (Algorithm::RS256, key),
                Err(rsa) => match DecodingKey::from_ec_pem(&pem) {
                    Ok(key) => (Algorithm::ES256, key),
                    Err(ec) => {
                        return Err(JwtConfigError::BadPublicKey(format!(
                            "as RSA: {rsa}; as EC: {ec}"
                        )));
                    }
                },
            }),
        };
        Ok(JwtVerifier {
            hmac,
            public,
            issuer: settings.issuer,
            audience: settings.audience,
            leeway_secs: settings.leeway_secs,
        })
    }

    /// The algorithms accepted, for logs.
    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut algs = Vec::new();
        if self.hmac.is_some() {
            algs.push("HS256");
        }
        match self.public.as_ref().map(|(a, _)| *a) {
            Some(Algorithm::RS256) => algs.push("RS256"),
            Some(Algorithm::ES256) => algs.push("ES256"),
            _ => {}
        }
        algs
    }

    /// The user and the expiry of a valid token.
    pub fn verify(&self, token: &str) -> Result<(UserName, SystemTime), JwtError> {
        let header = decode_header(token).map_err(|_| JwtError::Invalid)?;
        let (alg, key) = match header.alg {
            Algorithm::HS256 => (Algorithm::HS256, self.hmac.as_ref()),
            alg => match &self.public {
                Some((a, key)) if *a == alg => (alg, Some(key)),
                _ => (alg, None),
            },
        };
        let key = key.ok_or(JwtError::Invalid)?;
        let mut validation = Validation::new(alg);
        validation.leeway = self.leeway_secs;
        validation.validate_nbf = true;
        validation.validate_exp = true;
        let mut required = vec!["exp", "sub"];
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        if let Some(aud) = &self.audience {
            validation.set_audience(&[aud]);
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        let data = decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => JwtError::Expired,
                ErrorKind::ImmatureSignature => JwtError::NotYetValid,
                _ => JwtError::Invalid,
            }
        })?;
        let user = UserName::new(&data.claims.sub).map_err(|_| JwtError::Invalid)?;
        let expires_at =
            UNIX_EPOCH + Duration::from_secs(data.claims.exp.saturating_add(self.leeway_secs));
        // The library compares whole seconds, so it accepts a token for up to a second past
        // `exp`; refusing from `exp` on (plus the leeway) exactly makes a new request and an
        // open stream agree on when the token ends.
        if SystemTime::now() >= expires_at {
            return Err(JwtError::Expired);
        }
        Ok((user, expires_at))
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn hs(claims: serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET).unwrap(),
        )
        .unwrap()
    }

    fn verifier(leeway_secs: u64) -> JwtVerifier {
        JwtVerifier::new(JwtSettings {
            secret: Some(SECRET.to_vec()),
            leeway_secs,
            ..Default::default()
        })
        .unwrap()
    }

    fn b64(data: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in data.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
            for i in 0..=chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            }
        }
        out
    }

    #[test]
    fn a_valid_token_names_its_user_and_expiry() {
        let exp = now() + 60;
        let (user, expires) = verifier(5)
            .verify(&hs(json!({"sub": "alice", "exp": exp})))
            .unwrap();
        assert_eq!(user.as_str(), "alice");
        assert_eq!(expires, UNIX_EPOCH + Duration::from_secs(exp + 5));
    }

    #[test]
    fn time_claims_are_checked_with_the_leeway() {
        let v = verifier(5);
        let t = now();
        assert_eq!(
            v.verify(&hs(json!({"sub": "a", "exp": t - 30}))),
            Err(JwtError::Expired)
        );
        assert!(v.verify(&hs(json!({"sub": "a", "exp": t - 2}))).is_ok());
        assert_eq!(
            v.verify(&hs(json!({"sub": "a", "exp": t + 60, "nbf": t + 30}))),
            Err(JwtError::NotYetValid)
        );
        assert!(
            v.verify(&hs(json!({"sub": "a", "exp": t + 60, "nbf": t + 2})))
                .is_ok()
        );
        let strict = verifier(0);
        assert_eq!(
            strict.verify(&hs(json!({"sub": "a", "exp": t - 2}))),
            Err(JwtError::Expired)
        );
    }

    #[test]
    fn sub_and_exp_are_required() {
        let v = verifier(5);
        assert_eq!(
            v.verify(&hs(json!({"exp": now() + 60}))),
            Err(JwtError::Invalid)
        );
        assert_eq!(v.verify(&hs(json!({"sub": "a"}))), Err(JwtError::Invalid));
        assert_eq!(
            v.verify(&hs(json!({"sub": "", "exp": now() + 60}))),
            Err(JwtError::Invalid)
        );
        assert_eq!(
            v.verify(&hs(json!({"sub": 7, "exp": now() + 60}))),
            Err(JwtError::Invalid)
        );
    }

    #[test]
    fn alg_none_other_algorithms_and_bad_signatures_are_refused() {
        let v = verifier(5);
        let claims = b64(json!({"sub": "a", "exp": now() + 60})
            .to_string()
            .as_bytes());
        for header in [
            json!({"alg": "none", "typ": "JWT"}),
            json!({"alg": "None"}),
            json!({"alg": "HS512"}),
            json!({"alg": "RS256"}),
        ] {
            let h = b64(header.to_string().as_bytes());
            assert_eq!(v.verify(&format!("{h}.{claims}.")), Err(JwtError::Invalid));
            assert_eq!(
                v.verify(&format!("{h}.{claims}.c2ln")),
                Err(JwtError::Invalid)
            );
        }
        let good = hs(json!({"sub": "a", "exp": now() + 60}));
        let forged = format!("{}x", &good[..good.len() - 1]);
        assert_eq!(v.verify(&forged), Err(JwtError::Invalid));
        let other = encode(
            &Header::new(Algorithm::HS256),
            &json!({"sub": "a", "exp": now() + 60}),
            &EncodingKey::from_secret(b"another secret of 32 bytes or more!!").unwrap(),
        )
        .unwrap();
        assert_eq!(v.verify(&other), Err(JwtError::Invalid));
        for junk in ["", "a", "a.b", "a.b.c", "...."] {
            assert_eq!(v.verify(junk), Err(JwtError::Invalid));
        }
    }

    #[test]
    fn audience_and_issuer_when_configured() {
        let v = JwtVerifier::new(JwtSettings {
            secret: Some(SECRET.to_vec()),
            issuer: Some("https://id.example".into()),
            audience: Some("playsync".into()),
            leeway_secs: 5,
            ..Default::default()
        })
        .unwrap();
        let exp = now() + 60;
        assert!(
            v.verify(&hs(
                json!({"sub": "a", "exp": exp, "iss": "https://id.example", "aud": "playsync"})
            ))
            .is_ok()
        );
        for claims in [
            json!({"sub": "a", "exp": exp, "iss": "https://id.example"}),
            json!({"sub": "a", "exp": exp, "aud": "playsync"}),
            json!({"sub": "a", "exp": exp, "iss": "https://evil.example", "aud": "playsync"}),
            json!({"sub": "a", "exp": exp, "iss": "https://id.example", "aud": "other"}),
        ] {
            assert_eq!(
                v.verify(&hs(claims.clone())),
                Err(JwtError::Invalid),
                "{claims}"
            );
        }
        // Without a configured audience, a token meant for some audience is refused.
        assert_eq!(
            verifier(5).verify(&hs(json!({"sub": "a", "exp": exp, "aud": "x"}))),
            Err(JwtError::Invalid)
        );
    }

    #[test]
    fn weak_settings_are_refused() {
        assert!(matches!(
            JwtVerifier::new(JwtSettings {
                secret: Some(b"short".to_vec()),
                ..Default::default()
            }),
            Err(JwtConfigError::ShortSecret)
        ));
        assert!(matches!(
            JwtVerifier::new(JwtSettings {
                public_key_pem: Some(
                    b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".to_vec()
                ),
                ..Default::default()
            }),
            Err(JwtConfigError::BadPublicKey(_))
        ));
        assert!(matches!(
            JwtVerifier::new(JwtSettings {
                secret: Some(SECRET.to_vec()),
                leeway_secs: 6,
                ..Default::default()
            }),
            Err(JwtConfigError::Leeway)
        ));
    }
}
