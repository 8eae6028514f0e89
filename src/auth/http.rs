//! Authentication over HTTP: the token comes from `Authorization: Bearer <token>` or, for
//! `EventSource` (which cannot set headers), from `?token=`; the header wins when both are
//! there. [`Caller`] is the extractor handlers take; a refusal is a 401 [`ApiError`] with
//! `WWW-Authenticate: Bearer realm="playsync"`. [`redacted_uri`] keeps `?token=` out of logs.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};

use super::{Auth, AuthError, Identity, Secret};
use crate::error::ApiError;

/// The token in an `Authorization: Bearer` header (scheme case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once([' ', '\t'])?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The value of the `token` query parameter, form-decoded (`%XX`, and `+` as a space).
pub fn query_token(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (form_decode(key)? == "token")
            .then(|| form_decode(value))
            .flatten()
            .filter(|v| !v.is_empty())
    })
}

fn form_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `uri` with the value of every `token` query parameter replaced by `[redacted]`, for logs.
pub fn redacted_uri(uri: &Uri) -> String {
    let Some(query) = uri.query() else {
        return uri.to_string();
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| {
            let key = pair.split_once('=').map_or(pair, |(k, _)| k);
            if form_decode(key).is_none_or(|k| k == "token") {
                format!("{key}=[redacted]")
            } else {
                pair.to_owned()
            }
        })
        .collect();
    format!("{}?{}", uri.path(), redacted.join("&"))
}

/// The tracing span of a request (what tower-http's default shows), with `?token=` redacted.
pub(crate) fn request_span<B>(req: &axum::http::Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %req.method(),
        uri = %redacted_uri(req.uri()),
        version = ?req.version(),
    )
}

/// A 401 for `why`, with the challenge RFC 6750 asks for.
pub fn unauthorized(why: AuthError) -> ApiError {
    let challenge = match why {
        AuthError::Missing => r#"Bearer realm="playsync""#,
        _ => r#"Bearer realm="playsync", error="invalid_token""#,
    };
    ApiError::new(StatusCode::UNAUTHORIZED, why.to_string()).with_header(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    )
}

/// Who is calling: nobody in particular when authentication is off, else a verified user.
/// Extracting it refuses the request with a 401 when authentication is on and the token is
/// missing or not valid.
pub(crate) struct Caller {
    pub(crate) identity: Option<Identity>,
    /// The token presented, kept so a long-lived stream can check it again on reload.
    pub(crate) token: Option<Secret>,
}

impl Caller {
    /// The token's user, if authentication is on.
    pub(crate) fn user(&self) -> Option<&super::UserName> {
        self.identity.as_ref().map(|i| &i.user)
    }
}

impl<S> FromRequestParts<S> for Caller
where
    Auth: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Auth::from_ref(state);
        if !auth.is_enabled() {
            return Ok(Caller {
                identity: None,
                token: None,
            });
        }
        let token = match bearer_token(&parts.headers) {
            Some(t) => Secret::new(t),
            None => parts
                .uri
                .query()
                .and_then(query_token)
                .map(Secret::new)
                .ok_or_else(|| unauthorized(AuthError::Missing))?,
        };
        match auth.verify(token.expose()) {
            Ok(identity) => Ok(Caller {
                identity: Some(identity),
                token: Some(token),
            }),
            Err(why) => {
                tracing::debug!(reason = %why, path = parts.uri.path(), "request refused: not authenticated");
                Err(unauthorized(why))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer_token(&headers("Bearer abc")), Some("abc"));
        assert_eq!(bearer_token(&headers("bearer   abc ")), Some("abc"));
        assert_eq!(bearer_token(&headers("BEARER\tabc")), Some("abc"));
        assert_eq!(bearer_token(&headers("Basic YTpi")), None);
        assert_eq!(bearer_token(&headers("Bearer")), None);
        assert_eq!(bearer_token(&headers("Bearer   ")), None);
        assert_eq!(bearer_token(&HeaderMap::new()), None);
    }

    #[test]
    fn query_tokens() {
        assert_eq!(query_token("token=abc").as_deref(), Some("abc"));
        assert_eq!(
            query_token("a=1&token=a%2Bb%3D&b=2").as_deref(),
            Some("a+b=")
        );
        assert_eq!(query_token("token=a+b").as_deref(), Some("a b"));
        assert_eq!(query_token("tok%65n=x").as_deref(), Some("x"));
        assert_eq!(query_token("token=").as_deref(), None);
        assert_eq!(query_token("tokens=abc").as_deref(), None);
        assert_eq!(query_token("token=%zz").as_deref(), None);
        assert_eq!(query_token("").as_deref(), None);
    }

    #[test]
    fn tokens_are_redacted_from_uris() {
        let uri: Uri = "/api/events/playback?a=1&token=s3cret&tok%65n=s3cret2&b"
            .parse()
            .unwrap();
        let shown = redacted_uri(&uri);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert_eq!(
            shown,
            "/api/events/playback?a=1&token=[redacted]&tok%65n=[redacted]&b"
        );
        let plain: Uri = "/health".parse().unwrap();
        assert_eq!(redacted_uri(&plain), "/health");
        // A key that does not decode might be anything: redacted too.
        let odd: Uri = "/x?%zz=s3cret".parse().unwrap();
        assert!(!redacted_uri(&odd).contains("s3cret"));
    }

    #[test]
    fn challenges() {
        use axum::response::IntoResponse;
        let r = unauthorized(AuthError::Missing).into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers()["www-authenticate"],
            r#"Bearer realm="playsync""#
        );
        let r = unauthorized(AuthError::Expired).into_response();
        assert!(
            r.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with(r#"Bearer realm="playsync""#)
        );
    }
}
