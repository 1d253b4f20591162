//! Who may read what, and where the URLs handed out point: JWT auth (exp, nbf, the archives
//! claim), CORS only when configured, and TileJSON built from the public URL alone.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use axum::http::StatusCode;
use etl_tileserver::app::{Cors, Settings};
use support::*;

#[tokio::test]
async fn cors() {
    let dir = vec_and_img();
    // Only when asked for: `--cors-origins "*"`.
    let settings = Settings {
        cors: Cors::Any,
        ..dev_settings()
    };
    let (app, _) = dir_app(dir.path(), settings);
    let r = get(
        &app,
        "/tiles/vec/0/0/0.pbf",
        &[("origin", "https://app.example")],
    )
    .await;
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(
        r.header("access-control-expose-headers")
            .unwrap()
            .to_lowercase()
            .contains("etag")
    );
    let pre = request(
        &app,
        "OPTIONS",
        "/tiles/vec/0/0/0.pbf",
        &[
            ("origin", "https://app.example"),
            ("access-control-request-method", "GET"),
            (
                "access-control-request-headers",
                "authorization, if-none-match",
            ),
        ],
    )
    .await;
    assert!(pre.status.is_success(), "{}", pre.status);
    assert_eq!(pre.header("access-control-allow-origin"), Some("*"));
    let methods = pre.header("access-control-allow-methods").unwrap();
    assert!(methods.contains("GET"), "{methods}");
    let allowed = pre
        .header("access-control-allow-headers")
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("if-none-match"),
        "{allowed}"
    );
    assert_eq!(pre.header("access-control-max-age"), Some("86400"));

    let settings = Settings {
        cors: Cors::Origins(vec!["https://good.example".into()]),
        ..dev_settings()
    };
    let (app, _) = dir_app(dir.path(), settings);
    let r = get(&app, "/tiles/vec", &[("origin", "https://good.example")]).await;
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://good.example")
    );
    let r = get(&app, "/tiles/vec", &[("origin", "https://evil.example")]).await;
    assert_eq!(r.header("access-control-allow-origin"), None);

    // The default is no CORS at all, with or without auth.
    for settings in [dev_settings(), prod_settings()] {
        assert_eq!(settings.cors, Cors::Off);
        let (app, _) = dir_app(dir.path(), settings);
        let r = get(&app, "/health", &[("origin", "https://good.example")]).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("access-control-allow-origin"), None);
        let pre = request(
            &app,
            "OPTIONS",
            "/tiles/vec",
            &[
                ("origin", "https://good.example"),
                ("access-control-request-method", "GET"),
            ],
        )
        .await;
        assert_eq!(pre.header("access-control-allow-origin"), None);
    }
}

#[tokio::test]
async fn auth() {
    let dir = vec_and_img();
    let (app, _) = dir_app(dir.path(), prod_settings());
    let good = token(
        SECRET,
        serde_json::json!({"exp": now() + 600, "archives": ["vec"]}),
    );
    let all = token(
        SECRET,
        serde_json::json!({"exp": now() + 600, "archives": "*"}),
    );
    let expired = token(
        SECRET,
        serde_json::json!({"exp": now() - 3600, "archives": "*"}),
    );
    let forged = token(
        "another-secret-0123456789-0123456789-xyz",
        serde_json::json!({"exp": now() + 600, "archives": "*"}),
    );
    let no_exp = token(SECRET, serde_json::json!({"archives": "*"}));
    let early = token(
        SECRET,
        serde_json::json!({"exp": now() + 7200, "nbf": now() + 3600, "archives": "*"}),
    );
    let bearer = |t: &str| format!("Bearer {t}");

    for uri in [
        "/tiles/vec",
        "/tiles/vec/0/0/0.pbf",
        "/view/vec",
        "/archives/vec.pmtiles",
        "/",
    ] {
        let r = get(&app, uri, &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{uri}");
        assert!(
            r.header("www-authenticate").unwrap().starts_with("Bearer"),
            "{uri}"
        );
    }
    for (t, what) in [
        (&expired, "expired"),
        (&forged, "signature"),
        (&no_exp, "exp"),
        (&early, "not valid yet"),
    ] {
        let r = get(
            &app,
            "/tiles/vec/0/0/0.pbf",
            &[("authorization", &bearer(t))],
        )
        .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(
            r.json()["error"].as_str().unwrap().contains(what),
            "{}",
            r.text()
        );
        let r = get(&app, &format!("/tiles/vec/0/0/0.pbf?token={t}"), &[]).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what} in query");
    }
    let r = get(
        &app,
        "/tiles/vec/0/0/0.pbf",
        &[("authorization", &bearer(&good))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("cache-control"), Some("private, max-age=86400"));
    let r = get(&app, &format!("/tiles/vec/0/0/0.pbf?token={good}"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    let r = get(&app, &format!("/tiles/vec?token={good}"), &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.json()["tiles"][0]
            .as_str()
            .unwrap()
            .ends_with(&format!("?token={good}"))
    );
    // A valid token outside its claim: 403, also for archives that do not exist.
    for uri in [
        "/tiles/img",
        "/tiles/img/2/1/1.png",
        "/view/img",
        "/archives/img.pmtiles",
        "/tiles/secret",
    ] {
        let r = get(&app, uri, &[("authorization", &bearer(&good))]).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{uri}");
    }
    let r = get(
        &app,
        "/tiles/img/2/1/1.png",
        &[("authorization", &bearer(&all))],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    // The listing shows what the token opens.
    let r = get(
        &app,
        "/",
        &[
            ("authorization", &bearer(&good)),
            ("accept", "application/json"),
        ],
    )
    .await;
    let names: Vec<String> = r.json()["archives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["vec"]);
    // Health and assets need no token.
    assert_eq!(get(&app, "/health", &[]).await.status, StatusCode::OK);
    assert_eq!(
        get(&app, "/assets/preview.js", &[]).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn urls_come_from_the_public_url_not_the_request() {
    let dir = vec_and_img();
    let all = token(
        SECRET,
        serde_json::json!({"exp": now() + 600, "archives": "*"}),
    );
    let bearer = format!("Bearer {all}");
    let settings = Settings {
        public_url: "https://tiles.example.com/api".into(),
        ..prod_settings()
    };
    let (app, _) = dir_app(dir.path(), settings);
    // A client (or a cache keyed without these headers) choosing the host the URLs point at
    // would let it poison TileJSON for everyone: they are ignored.
    let r = get(
        &app,
        "/tiles/vec",
        &[
            ("authorization", &bearer),
            ("host", "evil.example"),
            ("x-forwarded-host", "attacker.example"),
            ("x-forwarded-proto", "http"),
            ("forwarded", "host=attacker.example;proto=http"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(
        r.json()["tiles"][0],
        "https://tiles.example.com/api/tiles/vec/{z}/{x}/{y}.pbf"
    );
    assert!(!r.text().contains("attacker") && !r.text().contains("evil"));
    let r = get(
        &app,
        "/view/vec",
        &[
            ("authorization", &bearer),
            ("x-forwarded-host", "attacker.example"),
        ],
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let html = r.text();
    assert!(html.contains("/api/tiles/vec"), "{html}");
    assert!(!html.contains("attacker"), "{html}");
    let health = get(&app, "/health", &[]).await.json();
    assert_eq!(health["public_url"], "https://tiles.example.com/api");
    assert_eq!(health["auth"], true);
}
