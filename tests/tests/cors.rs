//! Bucket CORS: configuration through the SDK, preflights and the CORS
//! headers of actual responses (errors included) over raw HTTP.

use aws_sdk_s3::types::{CorsConfiguration, CorsRule};
use tessera_tests::*;

fn rule(methods: &[&str], origins: &[&str]) -> aws_sdk_s3::types::builders::CorsRuleBuilder {
    let mut r = CorsRule::builder();
    for m in methods {
        r = r.allowed_methods(*m);
    }
    for o in origins {
        r = r.allowed_origins(*o);
    }
    r
}

async fn put_rules(s3: &aws_sdk_s3::Client, bucket: &str, rules: Vec<CorsRule>) {
    let cfg = CorsConfiguration::builder().set_cors_rules(Some(rules)).build().expect("cors config");
    ok(s3.put_bucket_cors().bucket(bucket).cors_configuration(cfg).send().await, "put cors");
}

#[tokio::test(flavor = "multi_thread")]
async fn put_get_delete_bucket_cors() {
    let (_server, s3) = with_bucket("cors").await;
    assert_s3_error(s3.get_bucket_cors().bucket("cors").send().await, 404, "NoSuchCORSConfiguration");
    let r1 = rule(&["GET", "PUT"], &["https://app.example"])
        .id("app")
        .allowed_headers("x-amz-*")
        .expose_headers("ETag")
        .max_age_seconds(300)
        .build()
        .expect("rule");
    let r2 = rule(&["GET"], &["*"]).build().expect("rule");
    put_rules(&s3, "cors", vec![r1, r2]).await;
    let got = ok(s3.get_bucket_cors().bucket("cors").send().await, "get cors");
    let rules = got.cors_rules();
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[0].id(), Some("app"));
    assert_eq!(rules[0].allowed_methods(), ["GET", "PUT"]);
    assert_eq!(rules[0].allowed_headers(), ["x-amz-*"]);
    assert_eq!(rules[0].expose_headers(), ["ETag"]);
    assert_eq!(rules[0].max_age_seconds(), Some(300));
    assert_eq!(rules[1].allowed_origins(), ["*"]);
    ok(s3.delete_bucket_cors().bucket("cors").send().await, "delete cors");
    assert_s3_error(s3.get_bucket_cors().bucket("cors").send().await, 404, "NoSuchCORSConfiguration");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_cors_configurations_are_refused() {
    let (server, s3) = with_bucket("badcors").await;
    let cfg = CorsConfiguration::builder()
        .cors_rules(rule(&["PATCH"], &["*"]).build().expect("rule"))
        .build()
        .expect("cfg");
    assert_s3_error(s3.put_bucket_cors().bucket("badcors").cors_configuration(cfg).send().await, 400, "InvalidRequest");
    let cfg = CorsConfiguration::builder()
        .cors_rules(rule(&["GET"], &["https://*.*.example"]).build().expect("rule"))
        .build()
        .expect("cfg");
    assert_s3_error(s3.put_bucket_cors().bucket("badcors").cors_configuration(cfg).send().await, 400, "InvalidRequest");
    // Raw: no rule at all, and no Content-MD5.
    let body = "<CORSConfiguration></CORSConfiguration>";
    let req = server.raw_request("PUT", "/badcors?cors").header("Content-MD5", &content_md5(body.as_bytes())).body(body);
    server.send(&server.sign(req)).assert_error(400, "MalformedXML");
    let body = "<CORSConfiguration><CORSRule><AllowedMethod>GET</AllowedMethod><AllowedOrigin>*</AllowedOrigin></CORSRule></CORSConfiguration>";
    let req = server.raw_request("PUT", "/badcors?cors").body(body);
    server.send(&server.sign(req)).assert_error(400, "InvalidRequest");
    // Another user's bucket is not theirs to configure.
    let users = "BOBKEYBOBKEYBOBKEY00 bobsecretbobsecretbobsecretbobsecret0000 bob-id bob\n";
    let server2 = Server::start_with(ServerOpts { users: Some(users.into()), ..Default::default() });
    ok(server2.client().create_bucket().bucket("rootcors").send().await, "create");
    let bob = server2.client_for("BOBKEYBOBKEYBOBKEY00", "bobsecretbobsecretbobsecretbobsecret0000");
    let cfg = CorsConfiguration::builder().cors_rules(rule(&["GET"], &["*"]).build().expect("rule")).build().expect("cfg");
    assert_s3_error(bob.put_bucket_cors().bucket("rootcors").cors_configuration(cfg).send().await, 403, "AccessDenied");
}

fn options(server: &Server, path: &str, headers: &[(&str, &str)]) -> RawResponse {
    let mut req = server.raw_request("OPTIONS", path);
    for (n, v) in headers {
        req = req.header(n, v);
    }
    server.send(&req)
}

#[tokio::test(flavor = "multi_thread")]
async fn preflights_match_origin_method_and_headers() {
    let (server, s3) = with_bucket("pre").await;
    // No configuration yet.
    options(&server, "/pre/k", &[("Origin", "https://app.example"), ("Access-Control-Request-Method", "GET")])
        .assert_error(403, "AccessForbidden");
    let r1 = rule(&["GET", "PUT"], &["https://app.example"])
        .allowed_headers("x-amz-*")
        .allowed_headers("content-type")
        .expose_headers("ETag")
        .max_age_seconds(600)
        .build()
        .expect("rule");
    let r2 = rule(&["GET"], &["*.suffix"]).build().expect("rule");
    put_rules(&s3, "pre", vec![r1, r2]).await;
    let resp = options(
        &server,
        "/pre/some/key",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "PUT"),
            ("Access-Control-Request-Headers", "X-Amz-Date, Content-Type"),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.body_text());
    assert_eq!(resp.header("access-control-allow-origin"), Some("https://app.example"));
    assert_eq!(resp.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(resp.header("access-control-allow-headers"), Some("X-Amz-Date, Content-Type"));
    assert_eq!(resp.header("access-control-max-age"), Some("600"));
    assert_eq!(resp.header("access-control-expose-headers"), Some("ETag"));
    assert_eq!(resp.header("access-control-allow-credentials"), Some("true"));
    let resp = options(&server, "/pre", &[("Origin", "foo.suffix"), ("Access-Control-Request-Method", "GET")]);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("access-control-allow-origin"), Some("foo.suffix"));
    assert_eq!(resp.header("access-control-allow-credentials"), None, "wildcard match reflects without credentials");
    // Refusals: unknown origin, method, header; missing Origin or method.
    for h in [
        vec![("Origin", "https://evil.example"), ("Access-Control-Request-Method", "GET")],
        vec![("Origin", "foo.suffix"), ("Access-Control-Request-Method", "PUT")],
        vec![("Origin", "https://app.example"), ("Access-Control-Request-Method", "GET"), ("Access-Control-Request-Headers", "authorization")],
    ] {
        let resp = options(&server, "/pre/k", &h);
        resp.assert_error(403, "AccessForbidden");
        assert_eq!(resp.header("access-control-allow-origin"), None);
    }
    options(&server, "/pre/k", &[("Access-Control-Request-Method", "GET")]).assert_error(400, "BadRequest");
    options(&server, "/pre/k", &[("Origin", "https://app.example")]).assert_error(400, "BadRequest");
    options(&server, "/nosuch/k", &[("Origin", "https://app.example"), ("Access-Control-Request-Method", "GET")])
        .assert_error(404, "NoSuchBucket");
    // A presigned URL's query does not make a preflight fail: it is never authenticated.
    let resp = options(
        &server,
        "/pre/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x&X-Amz-Signature=00",
        &[("Origin", "https://app.example"), ("Access-Control-Request-Method", "GET")],
    );
    assert_eq!(resp.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn actual_responses_carry_cors_headers_errors_included() {
    let (server, s3) = with_bucket("act").await;
    ok(s3.put_object().bucket("act").key("k").body(bytestream(b"data")).send().await, "put");
    put_rules(&s3, "act", vec![rule(&["GET", "HEAD"], &["*"]).expose_headers("ETag").build().expect("rule")]).await;
    let get = |path: &str, origin: Option<&str>| {
        let mut req = server.raw_request("GET", path);
        if let Some(o) = origin {
            req = req.header("Origin", o);
        }
        server.send(&server.sign(req))
    };
    let resp = get("/act/k", Some("https://any.example"));
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    assert_eq!(resp.header("access-control-allow-credentials"), None, "'*' never comes with credentials");
    assert_eq!(resp.header("access-control-expose-headers"), Some("ETag"));
    let resp = get("/act/missing", Some("https://any.example"));
    resp.assert_error(404, "NoSuchKey");
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"), "errors carry CORS headers too");
    // An anonymous (unauthenticated) request that is refused still carries them.
    let resp = server.send(&server.raw_request("GET", "/act/k").header("Origin", "https://any.example"));
    resp.assert_error(403, "AccessDenied");
    assert_eq!(resp.header("access-control-allow-origin"), Some("*"));
    // No Origin, or a method no rule allows: no CORS headers.
    assert_eq!(get("/act/k", None).header("access-control-allow-origin"), None);
    let req = server.raw_request("DELETE", "/act/nothing").header("Origin", "https://any.example");
    assert_eq!(server.send(&server.sign(req)).header("access-control-allow-origin"), None);
}
