//! The API reference: `/openapi.json` and Redoc at `/docs`, served from
//! the binary.

use bytes::Bytes;
use http::{HeaderValue, header};

/// The page at `/docs`: Redoc, served from the binary, rendering
/// `/openapi.json`.
const DOCS_PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>debrief API reference</title>
</head>
<body>
<div id="redoc"></div>
<script src="/docs/redoc.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
"#;

const DOCS_INIT: &str = "Redoc.init('/openapi.json', { disableSearch: false, hideDownloadButton: false },                          document.getElementById('redoc'));\n";

const REDOC: &[u8] = include_bytes!("../../assets/redoc/redoc.standalone.js");

/// The policy of the `/docs` pages: Redoc's script and inline styles from
/// this server only.
pub const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline';                             img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src blob:";

/// `/openapi.json` (the document given) and the `/docs` pages.
pub(super) fn routes(document: Bytes) -> axum::Router {
    let asset = |content_type: &'static str, body: Bytes| {
        move || {
            let body = body.clone();
            async move {
                (
                    [
                        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                        (
                            header::CACHE_CONTROL,
                            HeaderValue::from_static("public, max-age=300"),
                        ),
                        (
                            header::CONTENT_SECURITY_POLICY,
                            HeaderValue::from_static(DOCS_CSP),
                        ),
                    ],
                    body,
                )
            }
        }
    };
    axum::Router::new()
        .route(
            "/openapi.json",
            axum::routing::get(asset("application/json", document)),
        )
        .route(
            "/docs",
            axum::routing::get(asset(
                "text/html; charset=utf-8",
                Bytes::from_static(DOCS_PAGE.as_bytes()),
            )),
        )
        .route(
            "/docs/redoc.js",
            axum::routing::get(asset("text/javascript", Bytes::from_static(REDOC))),
        )
        .route(
            "/docs/init.js",
            axum::routing::get(asset("text/javascript", Bytes::from_static(DOCS_INIT.as_bytes()))),
        )
}
