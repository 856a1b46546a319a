//! Discovery and the HTTP client against real in-process servers (axum + rustls with a
//! test CA from rcgen): the parent-path walk, keys and templates at different levels,
//! template rendering and defaults, several endpoints, redirects (and loops), HTTPS to
//! HTTP refused unless allowed, malformed HTML, per-host credentials, TLS verification,
//! cancellation and streaming bodies.

use std::time::{Duration, Instant};

use crate::common::https::{TestServer, meta_page};
use acikit::discovery::{self, AciEndpoint, Discovered, DiscoveryOptions};
use acikit::net::{AuthConfig, CaCert, HttpClient, InsecureOptions, NetOptions};
use acikit::progress::Observer;
use acikit::{ErrorKind, ImageName, Label, Result};
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use futures_util::StreamExt;
use url::Url;

const D: &str = "ac-discovery";
const K: &str = "ac-discovery-pubkeys";

fn page(tags: &[(&str, &str)]) -> axum::routing::MethodRouter {
    let html = meta_page(tags);
    get(move || async move { Html(html) })
}

fn raw(html: &str) -> axum::routing::MethodRouter {
    let html = html.to_string();
    get(move || async move { Html(html) })
}

fn redirect(status: StatusCode, to: String) -> axum::routing::MethodRouter {
    get(move || async move { (status, [(header::LOCATION, to)]).into_response() })
}

fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
    pairs.iter().map(|(k, v)| Label::new(*k, *v)).collect()
}

fn image(name: &str) -> ImageName {
    ImageName::parse(name, &[]).unwrap()
}

async fn discover_with(
    options: NetOptions,
    name: &str,
    label_pairs: &[(&str, &str)],
) -> Result<Discovered> {
    let client = HttpClient::new(options)?;
    let image = ImageName::parse(name, &labels(label_pairs))?;
    discovery::discover(
        &client,
        &image,
        &DiscoveryOptions::default(),
        Observer::default(),
    )
    .await
}

async fn discover(
    server: &TestServer,
    name: &str,
    label_pairs: &[(&str, &str)],
) -> Result<Discovered> {
    discover_with(server.net_options(), name, label_pairs).await
}

fn paths(server: &TestServer) -> Vec<String> {
    server.requests().into_iter().map(|r| r.path).collect()
}

fn endpoint(aci: &str) -> AciEndpoint {
    AciEndpoint::new(format!("{aci}.aci"), format!("{aci}.aci.asc"))
}

#[tokio::test]
async fn parent_path_walk_stops_at_the_first_level_with_endpoints() {
    let server = TestServer::start(
        Router::new()
            // `/acme/team/app` is a 404 (no route).
            .route("/acme/team", raw("<html><head><meta name=description content=x></head></html>"))
            .route(
                "/acme",
                page(&[
                    (D, "example.test/acme https://cdn.example.test/{name}-{version}-{os}-{arch}.{ext}"),
                    (K, "example.test https://example.test/pubkeys.gpg"),
                ]),
            )
            .route("/", page(&[(D, "example.test https://root.example.test/{name}.{ext}")])),
    )
    .await;
    let found = discover(&server, "example.test/acme/team/app", &[])
        .await
        .unwrap();
    let (os, arch) = discovery::host_os_arch();
    assert_eq!(
        found.aci_endpoints,
        vec![endpoint(&format!(
            "https://cdn.example.test/example.test/acme/team/app-latest-{os}-{arch}"
        ))]
    );
    assert_eq!(found.pubkeys, vec!["https://example.test/pubkeys.gpg"]);
    let port = server.port;
    assert_eq!(
        found.tried,
        vec![
            format!("https://example.test:{port}/acme/team/app?ac-discovery=1"),
            format!("https://example.test:{port}/acme/team?ac-discovery=1"),
            format!("https://example.test:{port}/acme?ac-discovery=1"),
        ]
    );
    assert_eq!(
        paths(&server),
        vec![
            "/acme/team/app?ac-discovery=1",
            "/acme/team?ac-discovery=1",
            "/acme?ac-discovery=1"
        ],
        "the root is not asked once both kinds are found"
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.hostname() == "example.test")
    );
}

#[tokio::test]
async fn progress_counts_the_levels_walked() {
    let server = TestServer::start(Router::new().route(
        "/acme",
        page(&[(D, "example.test/acme https://cdn.example.test/{name}.{ext}")]),
    ))
    .await;
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = events.clone();
    let observer = Observer::with_progress(move |p| {
        assert_eq!(p.phase, acikit::Phase::Discover);
        seen.lock().unwrap().push((p.done, p.total));
    });
    let client = HttpClient::new(server.net_options()).unwrap();
    let options = DiscoveryOptions::default().pubkeys(false);
    discovery::discover(
        &client,
        &image("example.test/acme/team/app"),
        &options,
        observer,
    )
    .await
    .unwrap();
    // Four levels; the walk stops after the third (endpoints found, keys not wanted), and
    // the last event says all are done with.
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            (0, Some(4)),
            (1, Some(4)),
            (2, Some(4)),
            (3, Some(4)),
            (4, Some(4))
        ]
    );
}

#[tokio::test]
async fn keys_and_templates_found_at_different_levels() {
    let server = TestServer::start(
        Router::new()
            .route(
                "/acme/app",
                page(&[(D, "example.test/acme https://deep.test/{name}.{ext}")]),
            )
            .route(
                "/",
                page(&[
                    (D, "example.test https://root.test/{name}.{ext}"),
                    (K, "example.test https://example.test/root-keys.gpg"),
                ]),
            )
            .route(
                "/keys/app",
                page(&[(K, "example.test/keys https://example.test/deep-keys.gpg")]),
            )
            .route(
                "/keys",
                page(&[(K, "example.test https://example.test/middle-keys.gpg")]),
            ),
    )
    .await;

    // Templates deep, keys only at the root (`/acme` is a 404 on the way).
    let found = discover(&server, "example.test/acme/app", &[])
        .await
        .unwrap();
    assert_eq!(
        found.aci_endpoints,
        vec![endpoint("https://deep.test/example.test/acme/app")],
        "the root's template is not used once the deeper level gave one"
    );
    assert_eq!(found.pubkeys, vec!["https://example.test/root-keys.gpg"]);
    assert_eq!(
        paths(&server),
        vec![
            "/acme/app?ac-discovery=1",
            "/acme?ac-discovery=1",
            "/?ac-discovery=1"
        ]
    );

    // Keys deep, templates only at the root: the deepest keys win.
    server.clear_requests();
    let found = discover(&server, "example.test/keys/app", &[])
        .await
        .unwrap();
    assert_eq!(found.pubkeys, vec!["https://example.test/deep-keys.gpg"]);
    assert_eq!(
        found.aci_endpoints,
        vec![endpoint("https://root.test/example.test/keys/app")]
    );
    assert_eq!(found.tried.len(), 3);

    // Without the key walk, discovery stops at the first level with endpoints.
    server.clear_requests();
    let client = HttpClient::new(server.net_options()).unwrap();
    let options = DiscoveryOptions::default().pubkeys(false);
    let found = discovery::discover(
        &client,
        &image("example.test/acme/app"),
        &options,
        Observer::default(),
    )
    .await
    .unwrap();
    assert!(found.pubkeys.is_empty());
    assert_eq!(paths(&server), vec!["/acme/app?ac-discovery=1"]);
}

#[tokio::test]
async fn template_needing_a_missing_label_is_dropped() {
    let server = TestServer::start(
        Router::new()
            .route(
                "/app",
                page(&[
                    (
                        D,
                        "example.test https://a.test/{channel}/{name}-{version}.{ext}",
                    ),
                    (D, "example.test https://b.test/{name}-{version}.{ext}"),
                ]),
            )
            .route(
                "/only-channel",
                page(&[(D, "example.test https://a.test/{channel}/{name}.{ext}")]),
            )
            .route(
                "/",
                page(&[(D, "example.test https://root.test/{name}.{ext}")]),
            ),
    )
    .await;
    let found = discover(&server, "example.test/app", &[]).await.unwrap();
    assert_eq!(
        found.aci_endpoints,
        vec![endpoint("https://b.test/example.test/app-latest")]
    );

    let found = discover(
        &server,
        "example.test/app",
        &[("channel", "beta"), ("version", "2.0")],
    )
    .await
    .unwrap();
    assert_eq!(
        found.aci_endpoints,
        vec![
            endpoint("https://a.test/beta/example.test/app-2.0"),
            endpoint("https://b.test/example.test/app-2.0"),
        ],
        "any label is a template variable"
    );
    assert_eq!(found.labels["channel"], "beta");

    // A level whose only template is dropped gives nothing: the walk goes up.
    let found = discover(&server, "example.test/only-channel", &[])
        .await
        .unwrap();
    assert_eq!(
        found.aci_endpoints,
        vec![endpoint("https://root.test/example.test/only-channel")]
    );
    assert_eq!(found.tried.len(), 2);
}

#[tokio::test]
async fn dropped_templates_are_named_when_discovery_fails() {
    let server = TestServer::start(Router::new().route(
        "/",
        page(&[(D, "example.test https://a.test/{name}-{channel}.{ext}")]),
    ))
    .await;
    let err = discover(&server, "example.test/app", &[])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DiscoveryFailed);
    assert!(err.message().contains("needs label(s) channel"), "{err}");
}

#[tokio::test]
async fn version_defaults_to_latest_and_os_arch_to_the_host() {
    let server = TestServer::start(Router::new().route(
        "/app",
        page(&[(
            D,
            "example.test https://s.test/{os}/{arch}/{name}-{version}.{ext}",
        )]),
    ))
    .await;
    let (os, arch) = discovery::host_os_arch();
    let found = discover(&server, "example.test/app", &[]).await.unwrap();
    assert_eq!(
        found.aci_endpoints,
        vec![endpoint(&format!(
            "https://s.test/{os}/{arch}/example.test/app-latest"
        ))]
    );
    assert_eq!(found.labels["version"], "latest");
    assert_eq!(found.labels["os"], os);

    let found = discover(
        &server,
        "example.test/app",
        &[("version", "1.0.0"), ("os", "freebsd"), ("arch", "i386")],
    )
    .await
    .unwrap();
    assert_eq!(
        found.aci_endpoints,
        vec![endpoint(
            "https://s.test/freebsd/i386/example.test/app-1.0.0"
        )]
    );
}

#[tokio::test]
async fn several_endpoints_kept_in_document_order() {
    let server = TestServer::start(Router::new().route(
        "/acme/app",
        page(&[
            (D, "example.test https://one.test/{name}.{ext}"),
            (K, "example.test https://example.test/k1.gpg"),
            (D, "example.test/acme https://two.test/{name}.{ext}"),
            (D, "example.test https://one.test/{name}.{ext}"),
            (
                D,
                "example.test/other https://not-a-prefix.test/{name}.{ext}",
            ),
            (D, "example.test/ac https://three.test/{name}.{ext}"),
            (D, "example.test hdfs://four.test/{name}.{ext}"),
            (K, "example.test https://example.test/k2.gpg"),
            (K, "example.test https://example.test/k1.gpg"),
            (K, "other.test https://other.test/k.gpg"),
        ]),
    ))
    .await;
    let found = discover(&server, "example.test/acme/app", &[])
        .await
        .unwrap();
    let n = "example.test/acme/app";
    assert_eq!(
        found.aci_endpoints,
        vec![
            endpoint(&format!("https://one.test/{n}")),
            endpoint(&format!("https://two.test/{n}")),
            endpoint(&format!("https://three.test/{n}")),
            endpoint(&format!("hdfs://four.test/{n}")),
        ],
        "document order, repeats dropped, prefixes compared as strings (as the reference)"
    );
    assert_eq!(
        found.pubkeys,
        vec!["https://example.test/k1.gpg", "https://example.test/k2.gpg"]
    );
    assert_eq!(found.tried.len(), 1);
}

#[tokio::test]
async fn redirects_are_followed_across_hosts() {
    let server = TestServer::start_with(true, |port| {
        Router::new()
            .route(
                "/acme/app",
                redirect(StatusCode::FOUND, "/moved/app?x=1".into()),
            )
            .route(
                "/moved/app",
                redirect(
                    StatusCode::PERMANENT_REDIRECT,
                    format!("https://other.test:{port}/final"),
                ),
            )
            .route(
                "/final",
                page(&[(D, "example.test https://s.test/{name}.{ext}")]),
            )
    })
    .await;
    let found = discover(&server, "example.test/acme/app", &[])
        .await
        .unwrap();
    assert_eq!(
        found.aci_endpoints,
        vec![endpoint("https://s.test/example.test/acme/app")]
    );
    let hosts: Vec<(String, String)> = server
        .requests()
        .into_iter()
        .map(|r| (r.hostname().to_string(), r.path))
        .collect();
    assert_eq!(
        hosts[..3],
        [
            ("example.test".into(), "/acme/app?ac-discovery=1".into()),
            ("example.test".into(), "/moved/app?x=1".into()),
            ("other.test".into(), "/final".into()),
        ]
    );

    let client = HttpClient::new(server.net_options()).unwrap();
    let url = Url::parse(&server.url("example.test", "/acme/app")).unwrap();
    let response = client
        .get(url, HeaderMap::new(), &Observer::default())
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.url.as_str(), server.url("other.test", "/final"));
    assert_eq!(response.redirects.len(), 2);
}

#[tokio::test]
async fn redirect_loops_and_long_chains_are_refused() {
    let server = TestServer::start_with(true, |_| {
        Router::new()
            .route("/loop/a", redirect(StatusCode::FOUND, "/loop/b".into()))
            .route("/loop/b", redirect(StatusCode::SEE_OTHER, "/loop/a".into()))
            .route(
                "/chain/{n}",
                get(
                    |axum::extract::Path(n): axum::extract::Path<u32>| async move {
                        if n >= 20 {
                            Html(meta_page(&[])).into_response()
                        } else {
                            Redirect::temporary(&format!("/chain/{}", n + 1)).into_response()
                        }
                    },
                ),
            )
            .route(
                "/",
                page(&[(D, "example.test https://root.test/{name}.{ext}")]),
            )
    })
    .await;
    let client = HttpClient::new(server.net_options()).unwrap();
    let get_url = |path: &str| {
        let url = Url::parse(&server.url("example.test", path)).unwrap();
        let client = client.clone();
        async move {
            client
                .get(url, HeaderMap::new(), &Observer::default())
                .await
        }
    };

    let err = get_url("/loop/a").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManyRedirects);
    let a = server.url("example.test", "/loop/a");
    let b = server.url("example.test", "/loop/b");
    assert_eq!(err.message(), format!("redirect loop: {a} -> {b} -> {a}"));

    // 20 hops from /chain/0 to the page: too many for the default of 10 ...
    let err = get_url("/chain/0").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManyRedirects);
    assert!(
        err.message().starts_with("more than 10 redirects: "),
        "{err}"
    );
    assert!(err.message().contains("/chain/10 -> "), "{err}");
    // ... but 10 hops are fine.
    let response = get_url("/chain/10").await.unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.redirects.len(), 10);
    // A lower limit is honoured.
    let mut options = server.net_options();
    options.max_redirects = 2;
    let strict = HttpClient::new(options).unwrap();
    let url = Url::parse(&server.url("example.test", "/chain/17")).unwrap();
    let err = strict
        .get(url, HeaderMap::new(), &Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooManyRedirects);

    // In discovery, a looping level is noted and the walk goes on to the parent.
    let found = discover(&server, "example.test/loop/a", &[]).await.unwrap();
    assert_eq!(
        found.aci_endpoints,
        vec![endpoint("https://root.test/example.test/loop/a")]
    );
}

#[tokio::test]
async fn https_to_http_redirect_refused_unless_allowed() {
    let plain = TestServer::start_plain(Router::new().route(
        "/acme/app",
        page(&[(D, "example.test https://s.test/{name}.{ext}")]),
    ))
    .await;
    let target = plain.url("localhost", "/acme/app?ac-discovery=1");
    let server = TestServer::start(
        Router::new()
            .route(
                "/acme/app",
                redirect(StatusCode::MOVED_PERMANENTLY, target.clone()),
            )
            .route(
                "/",
                page(&[(D, "example.test https://root.test/{name}.{ext}")]),
            ),
    )
    .await;

    let err = discover(&server, "example.test/acme/app", &[])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InsecureRefused, "{err}");
    assert!(err.message().contains(&target), "{err}");
    assert!(
        plain.requests().is_empty(),
        "nothing was sent over plain HTTP"
    );
    assert_eq!(
        paths(&server),
        vec!["/acme/app?ac-discovery=1"],
        "the walk stopped"
    );

    let mut options = server.net_options();
    options.insecure = InsecureOptions::parse("http").unwrap();
    let found = discover_with(options, "example.test/acme/app", &[])
        .await
        .unwrap();
    assert_eq!(
        found.aci_endpoints,
        vec![endpoint("https://s.test/example.test/acme/app")]
    );
    assert_eq!(plain.requests().len(), 1);

    // A plain URL asked for directly is refused the same way.
    let client = HttpClient::new(server.net_options()).unwrap();
    let err = client
        .get(
            Url::parse(&target).unwrap(),
            HeaderMap::new(),
            &Observer::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InsecureRefused);
    assert_eq!(plain.requests().len(), 1);
}

#[tokio::test]
async fn plain_http_discovery_only_when_allowed() {
    let plain = TestServer::start_plain(Router::new().route(
        "/app",
        page(&[
            (D, "localhost https://s.test/{name}.{ext}"),
            (K, "localhost https://s.test/keys.gpg"),
        ]),
    ))
    .await;
    let mut options = plain.net_options();
    let err = discover_with(options.clone(), "localhost/app", &[])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DiscoveryFailed);
    assert!(!err.message().contains("http://"), "{err}");
    assert!(
        plain.requests().is_empty(),
        "the TLS handshake failed before any request"
    );

    options.insecure.http = true;
    let found = discover_with(options, "localhost/app", &[]).await.unwrap();
    let port = plain.port;
    assert_eq!(
        found.tried,
        vec![
            format!("https://localhost:{port}/app?ac-discovery=1"),
            format!("http://localhost:{port}/app?ac-discovery=1"),
        ]
    );
    assert_eq!(
        found.aci_endpoints,
        vec![endpoint("https://s.test/localhost/app")]
    );
}

#[tokio::test]
async fn malformed_html_is_tolerated() {
    let html = r#"<html><head><title>broken <b>page</title>
        <script>var s = '<meta name="ac-discovery" content="example.test https://script.test/{name}.{ext}">';</script>
        <style>meta { } /* <meta name="ac-discovery" content="example.test https://style.test/{name}.{ext}"> */</style>
        <!-- <meta name="ac-discovery" content="example.test https://comment.test/{name}.{ext}"> -->
        <meta name="ac-discovery" content="example.test">
        <meta name=ac-discovery content=example.test/app>
        <div class=unclosed <p <<>>
        <meta name='ac-discovery' content='example.test   https://real.test/{name}.{ext}'  / >
        <table><tr><td>no end tags
        <meta name="ac-discovery-pubkeys" content="example.test https://example.test/k.gpg""#;
    let server = TestServer::start(Router::new().route("/app", raw(html))).await;
    let found = discover(&server, "example.test/app", &[]).await.unwrap();
    assert_eq!(
        found.aci_endpoints,
        vec![endpoint("https://real.test/example.test/app")]
    );
    assert!(
        found.pubkeys.is_empty(),
        "an unterminated tag swallows the rest: {found:?}"
    );

    // Binary garbage is not HTML, and is not an error either: the walk goes up.
    let server = TestServer::start(
        Router::new()
            .route(
                "/app",
                get(|| async { Body::from(vec![0u8, 0xff, 0xfe, b'<', 0x80, b'>']) }),
            )
            .route(
                "/",
                page(&[(D, "example.test https://root.test/{name}.{ext}")]),
            ),
    )
    .await;
    let found = discover(&server, "example.test/app", &[]).await.unwrap();
    assert_eq!(found.tried.len(), 2);
}

#[tokio::test]
async fn server_errors_and_failures_keep_the_walk_going() {
    let server = TestServer::start(
        Router::new()
            .route(
                "/acme/app",
                get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
            )
            .route("/acme", get(|| async { StatusCode::UNAUTHORIZED }))
            .route(
                "/",
                page(&[(D, "example.test https://root.test/{name}.{ext}")]),
            ),
    )
    .await;
    let found = discover(&server, "example.test/acme/app", &[])
        .await
        .unwrap();
    assert_eq!(found.tried.len(), 3);

    let server = TestServer::start(Router::new().route(
        "/acme/app",
        get(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
    ))
    .await;
    let err = discover(&server, "example.test/acme/app", &[])
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DiscoveryFailed);
    let port = server.port;
    for expected in [
        format!("https://example.test:{port}/acme/app?ac-discovery=1: HTTP 500"),
        format!("https://example.test:{port}/acme?ac-discovery=1: HTTP 404"),
        format!("https://example.test:{port}/?ac-discovery=1: HTTP 404"),
    ] {
        assert!(err.message().contains(&expected), "{expected} in {err}");
    }
}

#[tokio::test]
async fn auth_header_sent_only_where_it_should_be() {
    let server = TestServer::start_with(true, |port| {
        Router::new()
            .route(
                "/acme/app",
                redirect(StatusCode::FOUND, format!("https://other.test:{port}/page")),
            )
            .route(
                "/page",
                page(&[
                    (D, "example.test https://s.test/{name}.{ext}"),
                    (K, "example.test https://s.test/keys.gpg"),
                ]),
            )
            .route("/same", redirect(StatusCode::FOUND, "/page".into()))
            .route(
                "/to-keys",
                redirect(StatusCode::FOUND, format!("https://keys.test:{port}/page")),
            )
    })
    .await;
    let mut auth = AuthConfig::from_json(
        format!(
            r#"{{"example.test": {{"type": "basic", "user": "alice", "password": "pw"}},
                "keys.test:{}": {{"type": "bearer", "token": "tok"}},
                "keys.test:1": {{"type": "bearer", "token": "wrong-port"}}}}"#,
            server.port
        )
        .as_bytes(),
    )
    .unwrap();
    let mut options = server.net_options();
    options.auth = auth.clone();
    discover_with(options.clone(), "example.test/acme/app", &[])
        .await
        .unwrap();
    let seen: Vec<(String, Option<String>)> = server
        .requests()
        .into_iter()
        .map(|r| (r.hostname().to_string(), r.authorization))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("example.test".into(), Some("Basic YWxpY2U6cHc=".into())),
            ("other.test".into(), None),
        ],
        "the credentials stay with their host"
    );

    // A header given by the caller is kept on the same origin, dropped on another one;
    // a host with its own credentials gets those.
    let client = HttpClient::new(options.clone()).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(header::AUTHORIZATION, "Bearer caller".parse().unwrap());
    for path in ["/same", "/acme/app", "/to-keys"] {
        server.clear_requests();
        let url = Url::parse(&server.url("example.test", path)).unwrap();
        client
            .get(url, headers.clone(), &Observer::default())
            .await
            .unwrap();
        let auths: Vec<Option<String>> = server
            .requests()
            .into_iter()
            .map(|r| r.authorization)
            .collect();
        let expected = match path {
            "/same" => vec![
                Some("Bearer caller".to_string()),
                Some("Bearer caller".to_string()),
            ],
            "/acme/app" => vec![Some("Bearer caller".to_string()), None],
            _ => vec![
                Some("Bearer caller".to_string()),
                Some("Bearer tok".to_string()),
            ],
        };
        assert_eq!(auths, expected, "{path}");
    }

    // Over plain HTTP the credentials go only when plain HTTP is allowed at all.
    let plain = TestServer::start_plain(Router::new().route(
        "/app",
        page(&[(D, "localhost https://s.test/{name}.{ext}")]),
    ))
    .await;
    auth.insert(
        "localhost",
        acikit::net::Credential::Bearer {
            token: "plain".into(),
        },
    )
    .unwrap();
    let mut options = plain.net_options();
    options.auth = auth;
    let refused = HttpClient::new(options.clone()).unwrap();
    let url = Url::parse(&plain.url("localhost", "/app")).unwrap();
    let err = refused
        .get(url.clone(), HeaderMap::new(), &Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InsecureRefused);
    assert!(plain.requests().is_empty());
    options.insecure.http = true;
    let allowed = HttpClient::new(options).unwrap();
    allowed
        .get(url, HeaderMap::new(), &Observer::default())
        .await
        .unwrap();
    assert_eq!(
        plain.requests()[0].authorization.as_deref(),
        Some("Bearer plain")
    );
}

#[tokio::test]
async fn tls_is_verified_unless_told_otherwise() {
    let server = TestServer::start(Router::new().route("/x", get(|| async { "hello" }))).await;
    let url = Url::parse(&server.url("example.test", "/x")).unwrap();

    let mut untrusted = server.net_options();
    untrusted.ca_certs.clear();
    let client = HttpClient::new(untrusted.clone()).unwrap();
    let err = client
        .get(url.clone(), HeaderMap::new(), &Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network);
    assert!(err.message().contains(url.as_str()), "{err}");
    assert!(
        err.message().to_lowercase().contains("certificate"),
        "{err}"
    );
    assert!(server.requests().is_empty());

    // The CA as a file, as `--ca-cert` gives it.
    let mut from_file = untrusted.clone();
    from_file.ca_certs = vec![CaCert::Path(server.ca_file.clone())];
    let client = HttpClient::new(from_file).unwrap();
    let response = client
        .get(url.clone(), HeaderMap::new(), &Observer::default())
        .await
        .unwrap();
    assert_eq!(response.bytes_limited(1024).await.unwrap().0, "hello");

    // No verification at all with the tls insecure option.
    untrusted.insecure.tls = true;
    let client = HttpClient::new(untrusted).unwrap();
    let response = client
        .get(url, HeaderMap::new(), &Observer::default())
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::OK);
    assert!(server.requests().iter().all(|r| r.authorization.is_none()));
}

#[tokio::test]
async fn bodies_stream_and_statuses_come_back_as_they_are() {
    const SIZE: usize = 3 << 20;
    let server = TestServer::start(
        Router::new()
            .route("/big", get(|| async { vec![7u8; SIZE] }))
            .route(
                "/missing",
                get(|| async { (StatusCode::NOT_FOUND, "nope") }),
            ),
    )
    .await;
    let client = HttpClient::new(server.net_options()).unwrap();
    let url = Url::parse(&server.url("example.test", "/big")).unwrap();
    let response = client
        .get(url, HeaderMap::new(), &Observer::default())
        .await
        .unwrap();
    assert_eq!(
        response.headers[header::CONTENT_LENGTH].to_str().unwrap(),
        SIZE.to_string()
    );
    let mut body = response.into_body();
    let (mut total, mut chunks) = (0, 0);
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.iter().all(|b| *b == 7));
        total += chunk.len();
        chunks += 1;
    }
    assert_eq!(total, SIZE);
    assert!(chunks > 1, "the body arrives in pieces");

    let url = Url::parse(&server.url("example.test", "/missing")).unwrap();
    let response = client
        .get(url.clone(), HeaderMap::new(), &Observer::default())
        .await
        .unwrap();
    assert_eq!(response.status, StatusCode::NOT_FOUND);
    let err = response.error_for_status().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Network);
    assert_eq!(err.message(), format!("GET {url}: HTTP 404 Not Found"));

    let sent = &server.requests()[0];
    assert_eq!(sent.method, "GET");
}

#[tokio::test]
async fn cancellation_stops_waits_for_headers_and_body() {
    let server = TestServer::start(
        Router::new()
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }),
            )
            .route(
                "/trickle",
                get(|| async {
                    let stream = futures_util::stream::once(async {
                        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"first"))
                    })
                    .chain(futures_util::stream::pending());
                    Response::new(Body::from_stream(stream))
                }),
            ),
    )
    .await;
    let client = HttpClient::new(server.net_options()).unwrap();

    let observer = Observer::default();
    let cancel = observer.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let url = Url::parse(&server.url("example.test", "/slow")).unwrap();
    let err = client
        .get(url, HeaderMap::new(), &observer)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert!(started.elapsed() < Duration::from_secs(10));

    let observer = Observer::default();
    let url = Url::parse(&server.url("example.test", "/trickle")).unwrap();
    let response = client.get(url, HeaderMap::new(), &observer).await.unwrap();
    let mut body = response.into_body();
    assert_eq!(&body.next().await.unwrap().unwrap()[..], b"first");
    let cancel = observer.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        cancel.cancel();
    });
    let err = body.next().await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert!(body.next().await.is_none());

    // A cancelled discovery stops at once.
    let observer = Observer::default();
    observer.cancel.cancel();
    let options = DiscoveryOptions::default();
    let err = discovery::discover(&client, &image("example.test/slow"), &options, observer)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.path != "/slow?ac-discovery=1")
    );
}

/// Cancelled while the server is slow to answer its first request, a discovery stops with
/// `cancelled` (not taken for a failed level: the parent, which would answer at once with
/// an endpoint, is never asked).
#[tokio::test]
async fn a_discovery_cancelled_while_the_server_answers_stops() {
    let server = TestServer::start(
        Router::new()
            .route(
                "/acme/app",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }),
            )
            .route(
                "/acme",
                page(&[(D, "example.test/acme https://example.test/{name}.{ext}")]),
            ),
    )
    .await;
    let client = HttpClient::new(server.net_options()).unwrap();
    let observer = Observer::default();
    let cancel = observer.cancel.clone();
    let asked = async {
        // Until the server has the first request, then cancel.
        while server.requests().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        cancel.cancel();
    };
    let started = Instant::now();
    let options = DiscoveryOptions::default();
    let name = image("example.test/acme/app");
    let (result, ()) = tokio::join!(
        discovery::discover(&client, &name, &options, observer),
        asked
    );
    let err = result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled, "{err}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(
        paths(&server),
        vec!["/acme/app?ac-discovery=1".to_string()],
        "nothing asked after the cancel"
    );
}

#[tokio::test]
async fn bad_names_and_labels_are_refused_before_any_request() {
    let server = TestServer::start(Router::new()).await;
    for (name, label_pairs, kind) in [
        ("Example.test/App", &[][..], ErrorKind::InvalidValue),
        ("example.test//app", &[][..], ErrorKind::InvalidValue),
        (
            "example.test/app",
            &[("ext", "zip")][..],
            ErrorKind::InvalidArgument,
        ),
        (
            "example.test/app",
            &[("Bad Label", "x")][..],
            ErrorKind::InvalidValue,
        ),
    ] {
        let err = discover(&server, name, label_pairs).await.unwrap_err();
        assert_eq!(err.kind(), kind, "{name} {label_pairs:?}");
    }
    assert!(server.requests().is_empty());
}
