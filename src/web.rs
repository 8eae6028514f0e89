//! The reference web client: the static files of `web/`, embedded in the binary and served
//! under `/app/` (the listening-room page at `/app/`, the positions page at
//! `/app/positions`, and `/app/playsync.js`, the client library other web apps can import).
//!
//! Owns only the serving: every file is compiled in with `include_bytes!`, so the binary needs
//! no files next to it and there is no build step. Responses carry `Cache-Control: no-cache`
//! and a strong `ETag` (a hash of the file computed at compile time): browsers revalidate on
//! every load and get a body-less 304 while the file is unchanged, and a new binary is never
//! hidden behind a stale cached script. The pages get a Content-Security-Policy that allows
//! only their own scripts and styles; media may come from anywhere (a track's `url` is any
//! audio URL, or a `blob:` URL of a host's local file).

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One embedded file.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    /// Pages get the Content-Security-Policy; scripts and styles do not need it.
    page: bool,
    /// FNV-1a 64 of `body`, computed at compile time.
    hash: u64,
}

const fn asset(body: &'static [u8], content_type: &'static str, page: bool) -> Asset {
    Asset {
        body,
        content_type,
        page,
        hash: fnv1a64(body),
    }
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static INDEX: Asset = asset(include_bytes!("../web/index.html"), HTML, true);
static APP_JS: Asset = asset(include_bytes!("../web/app.js"), JS, false);
static APP_CSS: Asset = asset(include_bytes!("../web/app.css"), CSS, false);
static PLAYSYNC_JS: Asset = asset(include_bytes!("../web/playsync.js"), JS, false);
static POSITIONS: Asset = asset(include_bytes!("../web/positions.html"), HTML, true);
static POSITIONS_JS: Asset = asset(include_bytes!("../web/positions.js"), JS, false);

/// The pages' policy: own scripts, styles and connections (Socket.IO and SSE on the same
/// origin); audio from anywhere, including `blob:` for a host's local file.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; media-src * blob: data:; img-src 'self' data:; \
    object-src 'none'; base-uri 'none'; form-action 'self'";

/// The routes of the web client, for any router state.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/app", get(to_app_dir))
        .route(
            "/app/",
            get(|h: HeaderMap| async move { serve(&INDEX, &h) }),
        )
        .route(
            "/app/app.js",
            get(|h: HeaderMap| async move { serve(&APP_JS, &h) }),
        )
        .route(
            "/app/app.css",
            get(|h: HeaderMap| async move { serve(&APP_CSS, &h) }),
        )
        .route(
            "/app/playsync.js",
            get(|h: HeaderMap| async move { serve(&PLAYSYNC_JS, &h) }),
        )
        .route(
            "/app/positions",
            get(|h: HeaderMap| async move { serve(&POSITIONS, &h) }),
        )
        .route(
            "/app/positions.js",
            get(|h: HeaderMap| async move { serve(&POSITIONS_JS, &h) }),
        )
}

/// `/app` → `/app/`, keeping the query (`/app?room=x` must still join room x), so that the
/// page's relative URLs resolve under `/app/`.
async fn to_app_dir(uri: Uri) -> Response {
    let location = match uri.query() {
        Some(q) => format!("/app/?{q}"),
        None => "/app/".to_owned(),
    };
    match HeaderValue::from_str(&location) {
        Ok(location) => (
            StatusCode::PERMANENT_REDIRECT,
            [(header::LOCATION, location)],
        )
            .into_response(),
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

fn serve(asset: &'static Asset, request: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.hash);
    let fresh = request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == etag || tag == "*");
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut ok = Response::new(Body::from(asset.body));
        ok.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        );
        ok
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.page {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    response
}

/// FNV-1a, 64 bits: a content hash for the ETag that a `const fn` can compute.
const fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use axum::body::to_bytes;
    use axum::http::{Method, Request};
    use tower::ServiceExt;

    async fn get_with(path: &str, headers: &[(&str, &str)]) -> Response {
        let mut request = Request::builder().method(Method::GET).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        router::<()>()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body_of(response: Response) -> String {
        String::from_utf8(
            to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap()
                .to_vec(),
        )
        .unwrap()
    }

    fn header_of(response: &Response, name: header::HeaderName) -> &str {
        response
            .headers()
            .get(&name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }

    #[tokio::test]
    async fn serves_every_file_with_its_type() {
        let files = [
            ("/app/", HTML, "<title>playsync"),
            ("/app/app.js", JS, "import"),
            ("/app/app.css", CSS, "{"),
            ("/app/playsync.js", JS, "export class Socket"),
            ("/app/positions", HTML, "EventSource"),
            ("/app/positions.js", JS, "EventSource"),
        ];
        for (path, content_type, excerpt) in files {
            let response = get_with(path, &[]).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(header_of(&response, header::CONTENT_TYPE), content_type);
            assert_eq!(header_of(&response, header::CACHE_CONTROL), "no-cache");
            assert_eq!(
                header_of(&response, header::X_CONTENT_TYPE_OPTIONS),
                "nosniff"
            );
            let etag = header_of(&response, header::ETAG).to_owned();
            assert!(etag.starts_with('"') && etag.len() == 18, "{path}: {etag}");
            let page = content_type == HTML;
            assert_eq!(
                response
                    .headers()
                    .contains_key(header::CONTENT_SECURITY_POLICY),
                page,
                "{path}"
            );
            let body = body_of(response).await;
            assert!(body.contains(excerpt), "{path} lacks {excerpt:?}");
        }
    }

    #[tokio::test]
    async fn the_pages_load_only_their_own_scripts() {
        let index = body_of(get_with("/app/", &[]).await).await;
        assert!(index.contains(r#"<script type="module" src="app.js">"#));
        assert!(index.contains(r#"href="app.css""#));
        assert!(!index.contains("<script>"), "no inline script (CSP)");
        let positions = body_of(get_with("/app/positions", &[]).await).await;
        assert!(positions.contains(r#"<script type="module" src="positions.js">"#));
        assert!(!positions.contains("<script>"), "no inline script (CSP)");
    }

    #[tokio::test]
    async fn revalidation_with_the_etag_is_a_304_without_body() {
        let first = get_with("/app/playsync.js", &[]).await;
        let etag = header_of(&first, header::ETAG).to_owned();
        let again = get_with("/app/playsync.js", &[("if-none-match", &etag)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(header_of(&again, header::ETAG), etag);
        assert_eq!(header_of(&again, header::CACHE_CONTROL), "no-cache");
        assert!(body_of(again).await.is_empty());
        // A list of tags, or a weak form of ours, matches too; another tag does not.
        let listed = format!("\"0000000000000000\", W/{etag}");
        let again = get_with("/app/playsync.js", &[("if-none-match", &listed)]).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        let other = get_with("/app/playsync.js", &[("if-none-match", "\"x\"")]).await;
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn each_file_has_its_own_etag() {
        let mut tags = Vec::new();
        for path in ["/app/", "/app/app.js", "/app/playsync.js", "/app/positions"] {
            let response = get_with(path, &[]).await;
            tags.push(header_of(&response, header::ETAG).to_owned());
        }
        let mut unique = tags.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), tags.len(), "{tags:?}");
    }

    #[tokio::test]
    async fn app_without_slash_redirects_and_keeps_the_query() {
        let response = get_with("/app", &[]).await;
        assert_eq!(response.status(), StatusCode::PERMANENT_REDIRECT);
        assert_eq!(header_of(&response, header::LOCATION), "/app/");
        let response = get_with("/app?room=party%201", &[]).await;
        assert_eq!(
            header_of(&response, header::LOCATION),
            "/app/?room=party%201"
        );
    }

    #[tokio::test]
    async fn head_has_the_headers_and_no_body() {
        let response = router::<()>()
            .oneshot(
                Request::builder()
                    .method(Method::HEAD)
                    .uri("/app/")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(header_of(&response, header::CONTENT_TYPE), HTML);
        assert!(body_of(response).await.is_empty());
    }

    #[tokio::test]
    async fn unknown_paths_are_not_served() {
        for path in ["/app/missing.js", "/app/../Cargo.toml", "/app/index.html"] {
            let response = get_with(path, &[]).await;
            assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        }
    }

    #[test]
    fn the_hash_is_fnv1a() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
