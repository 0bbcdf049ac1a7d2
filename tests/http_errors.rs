//! HTTP integration tests of `settle serve`: every error code of API.md,
//! tenancy, idempotency's refusals, limits, and malformed input of every
//! kind (a table of nasty requests and a small deterministic fuzz loop).
//! Whatever comes in, the answer is a JSON error below 500 and the server
//! stays healthy: the harness (`support/mod.rs`) checks every answer's
//! status, content type and envelope, and that the server's log holds no
//! panic and no ERROR line.

mod support;

use bytes::Bytes;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use settle_gateway::http::ROUTES;
use std::collections::BTreeSet;
use std::sync::Arc;
use support::{ADMIN_KEY, ChannelBody, Resp, Rng, Server, idem, query, rfc3339_in};

/// A well-formed id of each kind that names nothing.
const NO_WALLET: &str = "wal_01ARZ3NDEKTSV4RRFFQ69G5FAV";
const NO_TXN: &str = "txn_01ARZ3NDEKTSV4RRFFQ69G5FAV";
const NO_CUSTOMER: &str = "cus_01ARZ3NDEKTSV4RRFFQ69G5FAV";

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

fn concrete(template: &str, id: &str) -> String {
    template.replace("{id}", id)
}

fn is_write(method: &str) -> bool {
    method == "POST" || method == "PUT"
}

/// A client with a little of everything, and a second client with its own.
struct World {
    srv: Server,
    key: String,
    /// Single-asset USD, funded.
    wallet: String,
    /// USD and EUR, funded in both.
    multi: String,
    customer: String,
    held: String,
    pending: String,
    queued: String,
    settled: String,
    other_key: String,
    other_wallet: String,
    other_customer: String,
    other_held: String,
    other_pending: String,
    other_queued: String,
}

async fn world() -> World {
    let srv = Server::start().await;
    let key = srv.client_key().await;
    let other_key = srv.client_key().await;
    let mut made = Vec::new();
    for k in [&key, &other_key] {
        let c = srv
            .post_json(
                "/v1/customers",
                k,
                &json!({"name": "Cu", "type": "individual"}),
            )
            .await
            .ok(201);
        let wallet = s(&c["walletId"]).to_owned();
        srv.credit(k, &wallet, "USD", "100").await;
        let held = srv
            .post_json(
                &format!("/v1/wallets/{wallet}/reservations"),
                k,
                &json!({"asset": "USD", "amount": "10"}),
            )
            .await
            .ok(201);
        let pending = srv
            .post_json(
                &format!("/v1/wallets/{wallet}/credits"),
                k,
                &json!({"asset": "USD", "amount": "5", "pending": true}),
            )
            .await
            .ok(201);
        let queued = srv.debit(k, &wallet, "USD", "1000").await.ok(201);
        assert_eq!(queued["status"], "awaiting_funds");
        made.push((
            s(&c["id"]).to_owned(),
            wallet,
            s(&held["id"]).to_owned(),
            s(&pending["id"]).to_owned(),
            s(&queued["id"]).to_owned(),
        ));
    }
    let multi = srv.create_multi_wallet(&key, &["USD", "EUR"]).await;
    let settled = srv.credit(&key, &multi, "USD", "50").await;
    srv.credit(&key, &multi, "EUR", "50").await;
    let (customer, wallet, held, pending, queued) = made.remove(0);
    let (other_customer, other_wallet, other_held, other_pending, other_queued) = made.remove(0);
    World {
        srv,
        key,
        wallet,
        multi,
        customer,
        held,
        pending,
        queued,
        settled: s(&settled["id"]).to_owned(),
        other_key,
        other_wallet,
        other_customer,
        other_held,
        other_pending,
        other_queued,
    }
}

/// A plausible body for a route (valid in shape, for the auth tests).
fn body_for(template: &str, wallet: &str, to: &str) -> String {
    match template {
        "/v1/admin/clients" | "/v1/customers" => r#"{"name":"n","type":"individual"}"#.to_owned(),
        "/v1/wallets" => r#"{"ccyCode":"USD"}"#.to_owned(),
        t if t.ends_with("/settings") => r#"{"isFavourite":true}"#.to_owned(),
        t if t.ends_with("/status") => r#"{"status":"active"}"#.to_owned(),
        t if t.ends_with("/credits") || t.ends_with("/debits") || t.ends_with("/reservations") => {
            r#"{"asset":"USD","amount":"1"}"#.to_owned()
        }
        "/v1/transfers" => json!({"fromWalletId": wallet, "toWalletId": to, "asset": "USD",
                                  "amount": "1"})
        .to_string(),
        "/v1/conversions" => json!({"fromWalletId": wallet, "toWalletId": to, "sellAsset": "USD",
                                    "buyAsset": "EUR", "sellAmount": "1", "rate": "1"})
        .to_string(),
        "/v1/batch" => json!({"operations": [{"op": "credit", "walletId": wallet, "asset": "USD",
                                              "amount": "1"}]})
        .to_string(),
        _ => String::new(),
    }
}

fn id_for(template: &str, w: &World) -> String {
    if template.starts_with("/v1/transactions/") {
        w.held.clone()
    } else if template.starts_with("/v1/customers/") {
        w.customer.clone()
    } else {
        w.wallet.clone()
    }
}

/// Every route with a key, an idempotency key and a plausible body.
async fn send_route(w: &World, method: &str, template: &str, api_key: Option<&str>) -> Resp {
    let path = concrete(template, &id_for(template, w));
    let k = idem();
    let mut headers: Vec<(&str, &str)> = vec![
        ("x-idempotency-key", &k),
        ("content-type", "application/json"),
    ];
    if let Some(key) = api_key {
        headers.push(("x-api-key", key));
    }
    let body = if is_write(method) {
        body_for(template, &w.wallet, &w.multi)
    } else {
        String::new()
    };
    w.srv.raw(method, &path, &headers, body).await
}

#[tokio::test]
async fn unauthorized_without_a_valid_key() {
    let w = world().await;
    let bad_keys = [
        "",
        "nope",
        "sk_0000000000000000000000000000000000000000000000000000000000000000",
        "test-admin-key-0123456789-abcdefghijklmnoX",
    ];
    for &(method, template) in ROUTES {
        if template == "/healthz" || template == "/metrics" {
            continue;
        }
        send_route(&w, method, template, None)
            .await
            .err(401, "unauthorized");
        for bad in bad_keys {
            send_route(&w, method, template, Some(bad))
                .await
                .err(401, "unauthorized");
        }
        // A key with spaces around it is not the key.
        send_route(&w, method, template, Some(&format!(" {}x", w.key)))
            .await
            .err(401, "unauthorized");
    }
    // Nothing happened to the wallet.
    assert_eq!(
        w.srv.balance(&w.key, &w.wallet, "USD").await["cash"],
        "100.00"
    );
}

#[tokio::test]
async fn the_admin_and_client_keys_do_not_cross() {
    let w = world().await;
    for &(method, template) in ROUTES {
        if template == "/healthz" || template == "/metrics" {
            continue;
        }
        if template.starts_with("/v1/admin/") {
            send_route(&w, method, template, Some(&w.key))
                .await
                .err(403, "forbidden");
        } else {
            send_route(&w, method, template, Some(ADMIN_KEY))
                .await
                .err(403, "forbidden");
        }
    }
    let r = w
        .srv
        .raw(
            "GET",
            "/v1/admin/audit",
            &[("x-api-key", &w.other_key)],
            Bytes::new(),
        )
        .await;
    r.err(403, "forbidden");
    assert_eq!(
        w.srv.balance(&w.key, &w.wallet, "USD").await["cash"],
        "100.00"
    );
}

/// Another client's objects answer 404, on every kind of path, as if absent.
#[tokio::test]
async fn another_clients_objects_are_not_found() {
    let w = world().await;
    let srv = &w.srv;
    let me = &w.key;
    let theirs = &w.other_wallet;
    // Reads.
    for path in [
        format!("/v1/wallets/{theirs}"),
        format!("/v1/wallets/{theirs}/balance"),
        format!("/v1/wallets/{theirs}/transactions"),
        format!("/v1/wallets/{theirs}/queue"),
        format!("/v1/wallets/{theirs}/queue?asset=USD"),
        format!("/v1/transactions/{}", w.other_held),
        format!("/v1/transactions/{}", w.other_pending),
        format!("/v1/customers/{}", w.other_customer),
        format!("/v1/wallets/{NO_WALLET}"),
        format!("/v1/transactions/{NO_TXN}"),
        format!("/v1/customers/{NO_CUSTOMER}"),
    ] {
        srv.get(&path, me).await.err(404, "not_found");
    }
    // Writes on their wallet.
    let one = json!({"asset": "USD", "amount": "1"});
    for (method, path, body) in [
        (
            "PUT",
            format!("/v1/wallets/{theirs}/settings"),
            json!({"isFavourite": true}),
        ),
        (
            "PUT",
            format!("/v1/wallets/{theirs}/status"),
            json!({"status": "suspended"}),
        ),
        ("POST", format!("/v1/wallets/{theirs}/credits"), one.clone()),
        ("POST", format!("/v1/wallets/{theirs}/debits"), one.clone()),
        (
            "POST",
            format!("/v1/wallets/{theirs}/reservations"),
            one.clone(),
        ),
        (
            "POST",
            "/v1/transfers".to_owned(),
            json!({"fromWalletId": theirs, "toWalletId": w.wallet, "asset": "USD", "amount": "1"}),
        ),
        (
            "POST",
            "/v1/transfers".to_owned(),
            json!({"fromWalletId": w.wallet, "toWalletId": theirs, "asset": "USD", "amount": "1"}),
        ),
        (
            "POST",
            "/v1/conversions".to_owned(),
            json!({"fromWalletId": theirs, "toWalletId": w.multi, "sellAsset": "USD",
                   "buyAsset": "EUR", "sellAmount": "1", "rate": "1"}),
        ),
        (
            "POST",
            "/v1/conversions".to_owned(),
            json!({"fromWalletId": w.multi, "toWalletId": theirs, "sellAsset": "EUR",
                   "buyAsset": "USD", "sellAmount": "1", "rate": "1"}),
        ),
        (
            "POST",
            "/v1/wallets".to_owned(),
            json!({"ccyCode": "USD", "customerId": w.other_customer}),
        ),
        (
            "POST",
            format!("/v1/transactions/{}/settle", w.other_pending),
            json!({}),
        ),
        (
            "POST",
            format!("/v1/transactions/{}/reject", w.other_pending),
            json!({}),
        ),
        (
            "POST",
            format!("/v1/transactions/{}/capture", w.other_held),
            json!({}),
        ),
        (
            "POST",
            format!("/v1/transactions/{}/release", w.other_held),
            json!({}),
        ),
        (
            "POST",
            format!("/v1/transactions/{}/cancel", w.other_queued),
            json!({}),
        ),
    ] {
        srv.write(method, &path, me, &idem(), &body.to_string())
            .await
            .err(404, "not_found");
    }
    // The same through a batch: each operation is not found.
    let ops = json!({"operations": [
        {"op": "credit", "walletId": theirs, "asset": "USD", "amount": "1"},
        {"op": "debit", "walletId": theirs, "asset": "USD", "amount": "1"},
        {"op": "reserve", "walletId": theirs, "asset": "USD", "amount": "1"},
        {"op": "transfer", "fromWalletId": theirs, "toWalletId": w.wallet, "asset": "USD", "amount": "1"},
        {"op": "transfer", "fromWalletId": w.wallet, "toWalletId": theirs, "asset": "USD", "amount": "1"},
        {"op": "convert", "fromWalletId": theirs, "toWalletId": w.multi, "sellAsset": "USD",
         "buyAsset": "EUR", "sellAmount": "1", "rate": "1"},
        {"op": "convert", "fromWalletId": w.multi, "toWalletId": theirs, "sellAsset": "EUR",
         "buyAsset": "USD", "sellAmount": "1", "rate": "1"},
        {"op": "capture", "transactionId": w.other_held},
        {"op": "release", "transactionId": w.other_held},
        {"op": "settle", "transactionId": w.other_pending},
        {"op": "reject", "transactionId": w.other_pending},
        {"op": "cancel", "transactionId": w.other_queued},
    ]});
    let res = srv.post_json("/v1/batch", me, &ops).await.ok(200)["results"].clone();
    let res = res.as_array().expect("results");
    assert_eq!(res.len(), 12);
    for (i, r) in res.iter().enumerate() {
        assert_eq!(
            (&r["status"], &r["error"]["code"]),
            (&json!(404), &json!("not_found")),
            "op {i}: {r}"
        );
    }
    // Their wallet and transactions are untouched.
    let ok = &w.other_key;
    let b = srv.balance(ok, theirs, "USD").await;
    assert_eq!(
        (&b["cash"], &b["reserved"], &b["pending"], &b["queued"]),
        (
            &json!("100.00"),
            &json!("10.00"),
            &json!("5.00"),
            &json!("1000.00")
        )
    );
    let v = srv.wallet(ok, theirs).await;
    assert_eq!(
        (&v["status"], &v["isFavourite"]),
        (&json!("active"), &json!(false))
    );
    assert_eq!(srv.txn(ok, &w.other_held).await["status"], "held");
    assert_eq!(srv.txn(ok, &w.other_pending).await["status"], "pending");
    assert_eq!(
        srv.txn(ok, &w.other_queued).await["status"],
        "awaiting_funds"
    );
    assert_eq!(srv.balance(me, &w.wallet, "USD").await["cash"], "100.00");
    // And their own key still sees all of it.
    srv.get(&format!("/v1/customers/{}", w.other_customer), ok)
        .await
        .ok(200);
}

/// The routes that need an idempotency key.
fn idempotent_routes() -> Vec<(&'static str, &'static str)> {
    ROUTES
        .iter()
        .copied()
        .filter(|(m, p)| is_write(m) && p.starts_with("/v1/") && !p.starts_with("/v1/admin/"))
        .collect()
}

#[tokio::test]
async fn writes_need_a_valid_idempotency_key() {
    let w = world().await;
    let long = "k".repeat(256);
    let bad: [&[u8]; 5] = [
        b"",
        long.as_bytes(),
        "caf\u{e9}".as_bytes(),
        b"tab\there",
        b"\xff\xfe",
    ];
    for (method, template) in idempotent_routes() {
        let path = concrete(template, &id_for(template, &w));
        let body = body_for(template, &w.wallet, &w.multi);
        let base: Vec<(&str, &[u8])> = vec![
            ("x-api-key", w.key.as_bytes()),
            ("content-type", b"application/json"),
        ];
        let m = hyper::Method::from_bytes(method.as_bytes()).expect("method");
        w.srv
            .send(m.clone(), &path, &base, body.clone())
            .await
            .err(400, "idempotency_key_required");
        for k in bad {
            let mut h = base.clone();
            h.push(("x-idempotency-key", k));
            w.srv
                .send(m.clone(), &path, &h, body.clone())
                .await
                .err(400, "idempotency_key_required");
        }
    }
    // 255 printable characters (space included) are a key.
    let key255: String = (0..255u8).map(|i| char::from(b' ' + i % 95)).collect();
    let r = w
        .srv
        .post(
            &format!("/v1/wallets/{}/credits", w.wallet),
            &w.key,
            &key255,
            r#"{"asset":"USD","amount":"1"}"#,
        )
        .await;
    r.ok(201);
    // The admin paths need none.
    let r = w
        .srv
        .raw(
            "POST",
            "/v1/admin/clients",
            &[("x-api-key", ADMIN_KEY)],
            r#"{"name":"no key needed"}"#,
        )
        .await;
    r.ok(201);
    assert_eq!(
        w.srv.balance(&w.key, &w.wallet, "USD").await["cash"],
        "101.00"
    );
}

#[tokio::test]
async fn an_idempotency_key_is_for_one_request_only() {
    let w = world().await;
    let srv = &w.srv;
    let credits = format!("/v1/wallets/{}/credits", w.wallet);
    let k = idem();
    srv.post(&credits, &w.key, &k, r#"{"asset":"USD","amount":"1"}"#)
        .await
        .ok(201);
    // Another body, another path, another method: 422, and nothing done.
    srv.post(&credits, &w.key, &k, r#"{"asset":"USD","amount":"2"}"#)
        .await
        .err(422, "idempotency_key_reused");
    srv.post(&credits, &w.key, &k, r#"{"amount":"1","asset":"USD"}"#)
        .await
        .err(422, "idempotency_key_reused");
    srv.post(
        &format!("/v1/wallets/{}/credits", w.multi),
        &w.key,
        &k,
        r#"{"asset":"USD","amount":"1"}"#,
    )
    .await
    .err(422, "idempotency_key_reused");
    srv.post(
        &format!("/v1/wallets/{}/debits", w.wallet),
        &w.key,
        &k,
        r#"{"asset":"USD","amount":"1"}"#,
    )
    .await
    .err(422, "idempotency_key_reused");
    srv.put(
        &format!("/v1/wallets/{}/settings", w.wallet),
        &w.key,
        &k,
        r#"{"isFavourite":true}"#,
    )
    .await
    .err(422, "idempotency_key_reused");
    assert_eq!(
        srv.balance(&w.key, &w.wallet, "USD").await["cash"],
        "101.00"
    );
    assert_eq!(srv.balance(&w.key, &w.multi, "USD").await["cash"], "50.00");
    assert_eq!(srv.wallet(&w.key, &w.wallet).await["isFavourite"], false);
    // Keys are per client: the other client's same text is its own.
    let theirs = format!("/v1/wallets/{}/credits", w.other_wallet);
    let r = srv
        .post(&theirs, &w.other_key, &k, r#"{"asset":"USD","amount":"1"}"#)
        .await;
    r.ok(201);
    assert!(!r.replayed());
    assert_eq!(
        srv.balance(&w.other_key, &w.other_wallet, "USD").await["cash"],
        "101.00"
    );
}

#[tokio::test]
async fn a_request_that_failed_validation_can_be_corrected() {
    let w = world().await;
    let srv = &w.srv;
    let credits = format!("/v1/wallets/{}/credits", w.wallet);
    let k = idem();
    for bad in [
        r#"{"asset":"USD","amount":"1.001"}"#,
        r#"{"asset":"usd","amount":"1"}"#,
        r#"{"asset":"USD"}"#,
        "{",
    ] {
        let r = srv.post(&credits, &w.key, &k, bad).await;
        assert_eq!(r.status, 400, "{}", r.text());
        assert!(!r.replayed());
    }
    let first = srv
        .post(&credits, &w.key, &k, r#"{"asset":"USD","amount":"1.00"}"#)
        .await;
    first.ok(201);
    let again = srv
        .post(&credits, &w.key, &k, r#"{"asset":"USD","amount":"1.00"}"#)
        .await;
    assert_eq!((again.status, &again.body), (201, &first.body));
    assert!(again.replayed());
    assert_eq!(
        srv.balance(&w.key, &w.wallet, "USD").await["cash"],
        "101.00"
    );
}

#[tokio::test]
async fn refusals_are_remembered_and_replayed() {
    let w = world().await;
    let srv = &w.srv;
    let wallet = srv.create_wallet(&w.key, "USD").await;
    let debits = format!("/v1/wallets/{wallet}/debits");
    let body = r#"{"asset":"USD","amount":"5","onInsufficientFunds":"reject"}"#;
    let k = idem();
    let first = srv.post(&debits, &w.key, &k, body).await;
    first.err(409, "insufficient_funds");
    srv.credit(&w.key, &wallet, "USD", "10").await;
    // Now it would fit, but the key's answer stands.
    let again = srv.post(&debits, &w.key, &k, body).await;
    assert_eq!((again.status, &again.body), (409, &first.body));
    assert!(again.replayed());
    assert_eq!(srv.balance(&w.key, &wallet, "USD").await["cash"], "10.00");
    // A not-found answer is kept too.
    let k = idem();
    let path = format!("/v1/wallets/{NO_WALLET}/credits");
    let a = srv
        .post(&path, &w.key, &k, r#"{"asset":"USD","amount":"1"}"#)
        .await;
    a.err(404, "not_found");
    let b = srv
        .post(&path, &w.key, &k, r#"{"asset":"USD","amount":"1"}"#)
        .await;
    assert_eq!((b.status, &b.body, b.replayed()), (404, &a.body, true));
    // An invalid_state answer is kept.
    let k = idem();
    let path = format!("/v1/transactions/{}/settle", w.settled);
    let a = srv.post(&path, &w.key, &k, "").await;
    a.err(409, "invalid_state");
    let b = srv.post(&path, &w.key, &k, "").await;
    assert_eq!((b.status, &b.body, b.replayed()), (409, &a.body, true));
}

/// The same request sent several times at once runs once: each answer is
/// the first one or 409 `idempotency_conflict`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_duplicates_run_once() {
    let srv = Arc::new(Server::start().await);
    let key = srv.client_key().await;
    let wallet = srv.create_wallet(&key, "USD").await;
    let ops: Vec<Value> = (0..4_000)
        .map(|_| json!({"op": "credit", "walletId": wallet, "asset": "USD", "amount": "0.01"}))
        .collect();
    let body = json!({ "operations": ops }).to_string();
    let k = idem();
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let (srv, key, k, body) = (Arc::clone(&srv), key.clone(), k.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            srv.post("/v1/batch", &key, &k, &body).await
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.expect("join"));
    }
    let done: Vec<&Resp> = answers.iter().filter(|r| r.status == 200).collect();
    assert!(!done.is_empty(), "no answer succeeded");
    for r in &answers {
        if r.status == 409 {
            r.err(409, "idempotency_conflict");
        } else {
            assert_eq!(
                (r.status, &r.body),
                (200, &done[0].body),
                "a different answer"
            );
        }
    }
    assert_eq!(
        answers
            .iter()
            .filter(|r| r.status == 200 && !r.replayed())
            .count(),
        1,
        "exactly one ran"
    );
    assert_eq!(srv.balance(&key, &wallet, "USD").await["cash"], "40.00");
    let h = srv
        .get(&format!("/v1/wallets/{wallet}/transactions?limit=1"), &key)
        .await;
    assert_eq!(h.json["meta"]["totalCount"], 4_000);

    // Many small duplicates at once, too.
    let k = idem();
    let path = format!("/v1/wallets/{wallet}/credits");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (srv, key, k, path) = (Arc::clone(&srv), key.clone(), k.clone(), path.clone());
        tasks.push(tokio::spawn(async move {
            srv.post(&path, &key, &k, r#"{"asset":"USD","amount":"1"}"#)
                .await
        }));
    }
    let mut bodies = BTreeSet::new();
    for t in tasks {
        let r = t.await.expect("join");
        if r.status == 409 {
            r.err(409, "idempotency_conflict");
        } else {
            r.ok(201);
            bodies.insert(r.body.clone());
        }
    }
    assert_eq!(bodies.len(), 1, "one answer for one key");
    assert_eq!(srv.balance(&key, &wallet, "USD").await["cash"], "41.00");
}

#[tokio::test]
async fn bodies_must_be_json() {
    let w = world().await;
    let srv = &w.srv;
    let credits = format!("/v1/wallets/{}/credits", w.wallet);
    let body = r#"{"asset":"USD","amount":"1"}"#;
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
        "application/jsonx",
        "json",
        "",
    ] {
        let k = idem();
        let r = srv
            .raw(
                "POST",
                &credits,
                &[
                    ("x-api-key", &w.key),
                    ("x-idempotency-key", &k),
                    ("content-type", ct),
                ],
                body,
            )
            .await;
        r.err(415, "unsupported_media_type");
    }
    // The admin path checks it too.
    let r = srv
        .raw(
            "POST",
            "/v1/admin/clients",
            &[("x-api-key", ADMIN_KEY), ("content-type", "text/plain")],
            r#"{"name":"x"}"#,
        )
        .await;
    r.err(415, "unsupported_media_type");
    // JSON with parameters or in capitals, or no Content-Type at all.
    for ct in [
        Some("application/json; charset=utf-8"),
        Some("APPLICATION/JSON"),
        Some(" application/json "),
        None,
    ] {
        let k = idem();
        let mut h = vec![
            ("x-api-key", w.key.as_str()),
            ("x-idempotency-key", k.as_str()),
        ];
        if let Some(ct) = ct {
            h.push(("content-type", ct));
        }
        srv.raw("POST", &credits, &h, body).await.ok(201);
    }
    assert_eq!(
        srv.balance(&w.key, &w.wallet, "USD").await["cash"],
        "104.00"
    );
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_refused() {
    let w = world().await;
    let srv = &w.srv;
    const MIB: usize = 1024 * 1024;
    let credits = format!("/v1/wallets/{}/credits", w.wallet);
    let json_of = |len: usize| {
        let core = r#"{"asset":"USD","amount":"1"}"#;
        let mut b = String::with_capacity(len);
        b.push_str(core);
        b.push_str(&" ".repeat(len - core.len()));
        b
    };
    // Exactly 1 MiB (JSON padded with spaces) is fine.
    srv.post(&credits, &w.key, &idem(), &json_of(MIB))
        .await
        .ok(201);
    // One byte more is not, whether its length is declared or streamed.
    srv.post(&credits, &w.key, &idem(), &json_of(MIB + 1))
        .await
        .err(413, "payload_too_large");
    srv.post(&credits, &w.key, &idem(), &json_of(3 * MIB))
        .await
        .err(413, "payload_too_large");
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(64);
    let big = Bytes::from(json_of(MIB + 100));
    let feeder = tokio::spawn(async move {
        for chunk in big.chunks(64 * 1024) {
            if tx.send(Bytes::copy_from_slice(chunk)).await.is_err() {
                break;
            }
        }
    });
    let k = idem();
    let headers: [(&str, &[u8]); 3] = [
        ("x-api-key", w.key.as_bytes()),
        ("x-idempotency-key", k.as_bytes()),
        ("content-type", b"application/json"),
    ];
    srv.send_body(
        hyper::Method::POST,
        &credits,
        &headers,
        ChannelBody(rx).boxed(),
    )
    .await
    .err(413, "payload_too_large");
    feeder.await.expect("feeder");
    // On the admin path and in a GET too.
    srv.raw(
        "POST",
        "/v1/admin/clients",
        &[("x-api-key", ADMIN_KEY)],
        json_of(MIB + 1),
    )
    .await
    .err(413, "payload_too_large");
    srv.raw(
        "GET",
        &format!("/v1/wallets/{}", w.wallet),
        &[("x-api-key", &w.key)],
        json_of(MIB + 1),
    )
    .await
    .err(413, "payload_too_large");
    srv.assert_healthy().await;
    assert_eq!(
        srv.balance(&w.key, &w.wallet, "USD").await["cash"],
        "101.00"
    );
}

#[tokio::test]
async fn malformed_bodies_are_invalid_requests() {
    let w = world().await;
    let srv = &w.srv;
    let wal = &w.wallet;
    let credits = format!("/v1/wallets/{wal}/credits");
    let debits = format!("/v1/wallets/{wal}/debits");
    let reservations = format!("/v1/wallets/{wal}/reservations");
    let settings = format!("/v1/wallets/{wal}/settings");
    let status = format!("/v1/wallets/{wal}/status");
    let capture = format!("/v1/transactions/{}/capture", w.held);
    let release = format!("/v1/transactions/{}/release", w.held);
    let past = rfc3339_in(-10);
    let big_meta = format!(
        r#"{{"asset":"USD","amount":"1","metadata":"{}"}}"#,
        "m".repeat(20_000)
    );
    let cases: Vec<(&str, String, String)> = vec![
        // Not JSON, or not an object of the right shape.
        ("POST", credits.clone(), String::new()),
        ("POST", credits.clone(), "   ".into()),
        ("POST", credits.clone(), "{".into()),
        ("POST", credits.clone(), "[]".into()),
        ("POST", credits.clone(), "null".into()),
        ("POST", credits.clone(), "\"x\"".into()),
        ("POST", credits.clone(), "{} {}".into()),
        (
            "POST",
            credits.clone(),
            r#"{"asset":"USD","amount":"1"}x"#.into(),
        ),
        ("POST", credits.clone(), r#"{'asset':'USD'}"#.into()),
        (
            "POST",
            credits.clone(),
            r#"{"asset":"USD","amount":"1",}"#.into(),
        ),
        // Missing, unknown, wrong type.
        ("POST", credits.clone(), r#"{"amount":"1"}"#.into()),
        (
            "POST",
            credits.clone(),
            r#"{"asset":"USD","amount":"1","colour":"red"}"#.into(),
        ),
        (
            "POST",
            credits.clone(),
            r#"{"asset":5,"amount":"1"}"#.into(),
        ),
        (
            "POST",
            credits.clone(),
            r#"{"asset":"USD","amount":"1","pending":"yes"}"#.into(),
        ),
        (
            "POST",
            credits.clone(),
            r#"{"asset":"USD","amount":"1","pending":null}"#.into(),
        ),
        (
            "POST",
            credits.clone(),
            r#"{"asset":"USD","amount":"1","reference":7}"#.into(),
        ),
        ("POST", credits.clone(), big_meta),
        (
            "POST",
            debits.clone(),
            r#"{"asset":"USD","amount":"1","onInsufficientFunds":"maybe"}"#.into(),
        ),
        (
            "POST",
            debits.clone(),
            format!(r#"{{"asset":"USD","amount":"1","expiresAt":"{past}"}}"#),
        ),
        (
            "POST",
            debits.clone(),
            r#"{"asset":"USD","amount":"1","expiresAt":"tomorrow"}"#.into(),
        ),
        (
            "POST",
            debits.clone(),
            r#"{"asset":"USD","amount":"1","expiresAt":1700000000}"#.into(),
        ),
        (
            "POST",
            reservations.clone(),
            format!(r#"{{"asset":"USD","amount":"1","expiresAt":"{past}"}}"#),
        ),
        (
            "POST",
            reservations.clone(),
            r#"{"asset":"USD","amount":"1","onInsufficientFunds":"queue"}"#.into(),
        ),
        (
            "POST",
            capture.clone(),
            r#"{"amount":"1","extra":true}"#.into(),
        ),
        ("POST", release.clone(), r#"{"amount":"1"}"#.into()),
        ("POST", release.clone(), "nope".into()),
        ("PUT", settings.clone(), r#"{"isFavourite":"yes"}"#.into()),
        ("PUT", settings.clone(), r#"{"name":""}"#.into()),
        (
            "PUT",
            settings.clone(),
            format!(r#"{{"name":"{}"}}"#, "n".repeat(10_000)),
        ),
        ("PUT", settings.clone(), r#"{"colour":"red"}"#.into()),
        ("PUT", status.clone(), r#"{"status":"frozen"}"#.into()),
        ("PUT", status.clone(), r#"{"reason":"x"}"#.into()),
        ("PUT", status.clone(), r#"{"status":"ACTIVE"}"#.into()),
        // Wallets and customers.
        ("POST", "/v1/wallets".into(), "{}".into()),
        (
            "POST",
            "/v1/wallets".into(),
            r#"{"ccyCode":"USD","assets":["USD"]}"#.into(),
        ),
        ("POST", "/v1/wallets".into(), r#"{"assets":[]}"#.into()),
        ("POST", "/v1/wallets".into(), r#"{"assets":"USD"}"#.into()),
        (
            "POST",
            "/v1/wallets".into(),
            r#"{"ccyCode":"USD","type":"savings"}"#.into(),
        ),
        (
            "POST",
            "/v1/wallets".into(),
            r#"{"ccyCode":"USD","type":"customer"}"#.into(),
        ),
        (
            "POST",
            "/v1/wallets".into(),
            r#"{"ccyCode":"USD","customerId":"cus_nope"}"#.into(),
        ),
        (
            "POST",
            "/v1/wallets".into(),
            format!(
                r#"{{"ccyCode":"USD","type":"general","customerId":"{}"}}"#,
                w.customer
            ),
        ),
        (
            "POST",
            "/v1/wallets".into(),
            r#"{"ccyCode":"USD","name":"   "}"#.into(),
        ),
        ("POST", "/v1/customers".into(), r#"{"name":"x"}"#.into()),
        (
            "POST",
            "/v1/customers".into(),
            r#"{"name":"x","type":"person"}"#.into(),
        ),
        (
            "POST",
            "/v1/customers".into(),
            r#"{"name":"","type":"individual"}"#.into(),
        ),
        (
            "POST",
            "/v1/customers".into(),
            r#"{"type":"individual"}"#.into(),
        ),
        (
            "POST",
            "/v1/customers".into(),
            r#"{"name":"x","type":"individual","ccyCode":"USD","assets":["EUR"]}"#.into(),
        ),
        // Transfers and conversions.
        (
            "POST",
            "/v1/transfers".into(),
            format!(r#"{{"fromWalletId":"{wal}","asset":"USD","amount":"1"}}"#),
        ),
        (
            "POST",
            "/v1/transfers".into(),
            format!(
                r#"{{"fromWalletId":"{wal}","toWalletId":"{wal}","asset":"USD","amount":"1"}}"#
            ),
        ),
        (
            "POST",
            "/v1/transfers".into(),
            format!(r#"{{"fromWalletId":"{wal}","toWalletId":"nope","asset":"USD","amount":"1"}}"#),
        ),
        (
            "POST",
            "/v1/transfers".into(),
            format!(
                r#"{{"fromWalletId":"{wal}","toWalletId":"{}","asset":"USD","amount":"1"}}"#,
                w.held
            ),
        ),
        (
            "POST",
            "/v1/transfers".into(),
            format!(
                r#"{{"fromWalletId":["{wal}"],"toWalletId":"{}","asset":"USD","amount":"1"}}"#,
                w.multi
            ),
        ),
        (
            "POST",
            "/v1/conversions".into(),
            format!(
                r#"{{"fromWalletId":"{}","toWalletId":"{wal}","sellAsset":"USD","buyAsset":"USD","sellAmount":"1","rate":"1"}}"#,
                w.multi
            ),
        ),
        (
            "POST",
            "/v1/conversions".into(),
            format!(
                r#"{{"fromWalletId":"{}","toWalletId":"{wal}","sellAsset":"EUR","sellAmount":"1","rate":"1"}}"#,
                w.multi
            ),
        ),
        // Batches.
        ("POST", "/v1/batch".into(), "{}".into()),
        ("POST", "/v1/batch".into(), r#"{"operations":[]}"#.into()),
        ("POST", "/v1/batch".into(), r#"{"operations":{}}"#.into()),
        ("POST", "/v1/batch".into(), r#"{"operations":null}"#.into()),
        (
            "POST",
            "/v1/batch".into(),
            r#"{"operations":[{"op":"credit"}],"atomic":true}"#.into(),
        ),
    ];
    for (method, path, body) in cases {
        let r = srv.write(method, &path, &w.key, &idem(), &body).await;
        r.err(400, "invalid_request");
    }
    // Admin bodies.
    for body in [
        "",
        "{}",
        r#"{"name":""}"#,
        r#"{"name":5}"#,
        r#"{"name":"x","tier":"gold"}"#,
    ] {
        srv.raw(
            "POST",
            "/v1/admin/clients",
            &[
                ("x-api-key", ADMIN_KEY),
                ("content-type", "application/json"),
            ],
            body.to_owned(),
        )
        .await
        .err(400, "invalid_request");
    }
    // Nothing moved.
    let b = srv.balance(&w.key, wal, "USD").await;
    assert_eq!(
        (&b["cash"], &b["reserved"]),
        (&json!("100.00"), &json!("10.00"))
    );
    assert_eq!(srv.txn(&w.key, &w.held).await["status"], "held");
}

#[tokio::test]
async fn amounts_are_checked_exactly() {
    let w = world().await;
    let srv = &w.srv;
    let wal = &w.wallet;
    let btc = srv.create_multi_wallet(&w.key, &["BTC", "JPY"]).await;
    let bad_amounts = [
        r#""1.001""#,
        r#"1.001"#,
        r#""0""#,
        "0",
        "0.00",
        "-0",
        r#""-1""#,
        "-1",
        "-0.01",
        r#""1_000""#,
        r#""1e3""#,
        r#""1E3""#,
        r#""+5""#,
        r#"" 5""#,
        r#""5 ""#,
        r#""5.""#,
        r#"".5""#,
        r#""NaN""#,
        r#""Infinity""#,
        r#""""#,
        r#""1,00""#,
        r#""0x10""#,
        r#""１""#,
        "true",
        "false",
        "null",
        "[1]",
        r#"{"value":"1"}"#,
        "1e400",
        "1e-400",
        "1e28",
        r#""79228162514264337593543950336""#,
        r#""123456789012345678901234567890""#,
        "123456789012345678901234567890123456789",
        r#""0.0000000000000000000000000000001""#,
    ];
    let credits = format!("/v1/wallets/{wal}/credits");
    let debits = format!("/v1/wallets/{wal}/debits");
    let reservations = format!("/v1/wallets/{wal}/reservations");
    for a in bad_amounts {
        for path in [&credits, &debits, &reservations] {
            let body = format!(r#"{{"asset":"USD","amount":{a}}}"#);
            srv.post(path, &w.key, &idem(), &body)
                .await
                .err(400, "invalid_amount");
        }
        let body = format!(
            r#"{{"fromWalletId":"{wal}","toWalletId":"{}","asset":"USD","amount":{a}}}"#,
            w.multi
        );
        srv.post("/v1/transfers", &w.key, &idem(), &body)
            .await
            .err(400, "invalid_amount");
        // A rate has no scale of its own: 1.001 is a fine rate.
        let mut sides = vec![(a, "\"1\"")];
        if !a.contains("1.001") {
            sides.push(("\"1\"", a));
        }
        for (sell, rate) in sides {
            let body = format!(
                r#"{{"fromWalletId":"{}","toWalletId":"{wal}","sellAsset":"EUR","buyAsset":"USD","sellAmount":{sell},"rate":{rate}}}"#,
                w.multi
            );
            srv.post("/v1/conversions", &w.key, &idem(), &body)
                .await
                .err(400, "invalid_amount");
        }
        if a != "null" {
            // `{"amount": null}` is a capture in full.
            let body = format!(r#"{{"amount":{a}}}"#);
            srv.post(
                &format!("/v1/transactions/{}/capture", w.held),
                &w.key,
                &idem(),
                &body,
            )
            .await
            .err(400, "invalid_amount");
        }
        let ops = json!({"operations": [{"op": "credit", "walletId": wal, "asset": "USD",
            "amount": serde_json::from_str::<Value>(a).unwrap_or(Value::Null)}]});
        if a.starts_with('"') || ["true", "false", "null", "[1]", "0", "-1"].contains(&a) {
            let res = srv.post_json("/v1/batch", &w.key, &ops).await.ok(200);
            assert_eq!(
                res["results"][0]["error"]["code"], "invalid_amount",
                "{a}: {res}"
            );
        }
    }
    // Scales: BTC has 8 decimals, JPY none.
    for (asset, amount) in [("BTC", "0.000000001"), ("JPY", "1.5"), ("JPY", "0.1")] {
        let body = format!(r#"{{"asset":"{asset}","amount":"{amount}"}}"#);
        srv.post(
            &format!("/v1/wallets/{btc}/credits"),
            &w.key,
            &idem(),
            &body,
        )
        .await
        .err(400, "invalid_amount");
    }
    // More than the hold.
    srv.post_json(
        &format!("/v1/transactions/{}/capture", w.held),
        &w.key,
        &json!({"amount": "10.01"}),
    )
    .await
    .err(400, "invalid_amount");
    // A conversion whose result is below the smallest unit.
    srv.post_json(
        "/v1/conversions",
        &w.key,
        &json!({"fromWalletId": w.multi, "toWalletId": btc, "sellAsset": "USD", "buyAsset": "JPY",
                "sellAmount": "0.01", "rate": "0.5"}),
    )
    .await
    .err(400, "invalid_amount");
    // Nothing moved.
    let b = srv.balance(&w.key, wal, "USD").await;
    assert_eq!(
        (&b["cash"], &b["reserved"]),
        (&json!("100.00"), &json!("10.00"))
    );
    assert_eq!(srv.txn(&w.key, &w.held).await["status"], "held");
}

#[tokio::test]
async fn assets_are_checked() {
    let w = world().await;
    let srv = &w.srv;
    let wal = &w.wallet;
    for asset in [
        "XYZ",
        "usd",
        "Usd",
        "",
        "U",
        "US D",
        "USD ",
        "ABCDEFGHIJKL",
        "\u{0}",
        "€",
        "EUR",
    ] {
        let a = json!(asset);
        for path in ["credits", "debits", "reservations"] {
            srv.post_json(
                &format!("/v1/wallets/{wal}/{path}"),
                &w.key,
                &json!({"asset": a, "amount": "1"}),
            )
            .await
            .err(400, "unknown_asset");
        }
        srv.post_json(
            "/v1/transfers",
            &w.key,
            &json!({"fromWalletId": w.multi, "toWalletId": wal, "asset": a, "amount": "1"}),
        )
        .await
        .err(400, "unknown_asset");
        if asset != "EUR" {
            srv.post_json("/v1/wallets", &w.key, &json!({"ccyCode": a}))
                .await
                .err(400, "unknown_asset");
            srv.post_json("/v1/wallets", &w.key, &json!({"assets": ["USD", a]}))
                .await
                .err(400, "unknown_asset");
            srv.post_json(
                "/v1/customers",
                &w.key,
                &json!({"name": "x", "type": "business", "ccyCode": a}),
            )
            .await
            .err(400, "unknown_asset");
            srv.post_json(
                "/v1/conversions",
                &w.key,
                &json!({"fromWalletId": w.multi, "toWalletId": wal, "sellAsset": "USD",
                        "buyAsset": a, "sellAmount": "1", "rate": "1"}),
            )
            .await
            .err(400, "unknown_asset");
            let r = srv
                .get(
                    &format!("/v1/wallets/{wal}/queue?{}", query(&[("asset", asset)])),
                    &w.key,
                )
                .await;
            if asset.is_empty() {
                assert!(r.status == 400 || r.status == 200, "{}", r.text());
            } else {
                r.err(400, "unknown_asset");
            }
        }
    }
    // Assets a wallet does not hold.
    srv.get(&format!("/v1/wallets/{wal}/queue?asset=EUR"), &w.key)
        .await
        .err(400, "unknown_asset");
    srv.post_json(
        "/v1/conversions",
        &w.key,
        &json!({"fromWalletId": w.multi, "toWalletId": wal, "sellAsset": "USD",
                "buyAsset": "EUR", "sellAmount": "1", "rate": "1"}),
    )
    .await
    .err(400, "unknown_asset");
    srv.post_json(
        "/v1/conversions",
        &w.key,
        &json!({"fromWalletId": wal, "toWalletId": w.multi, "sellAsset": "EUR",
                "buyAsset": "USD", "sellAmount": "1", "rate": "1"}),
    )
    .await
    .err(400, "unknown_asset");
    let res = srv
        .post_json(
            "/v1/batch",
            &w.key,
            &json!({"operations": [{"op": "debit", "walletId": wal, "asset": "GBP", "amount": "1"}]}),
        )
        .await
        .ok(200);
    assert_eq!(res["results"][0]["error"]["code"], "unknown_asset");
    assert_eq!(srv.balance(&w.key, wal, "USD").await["cash"], "100.00");
}

#[tokio::test]
async fn unknown_paths_are_not_found_and_wrong_methods_not_allowed() {
    let w = world().await;
    let srv = &w.srv;
    for path in [
        "/",
        "/v1",
        "/v1/",
        "/v2/wallets",
        "/v1/wallet",
        "/v1/wallets/",
        "//v1/wallets",
        "/v1/wallets//balance",
        "/v1/transactions",
        "/v1/admin",
        "/v1/admin/clients/x",
        "/v1/webhook",
        "/v1/wallets/x/y/z",
        "/healthz/",
        "/metrics/x",
        "/index.html",
        "/favicon.ico",
    ] {
        for key in [None, Some(w.key.as_str()), Some(ADMIN_KEY)] {
            let mut h = vec![];
            if let Some(k) = key {
                h.push(("x-api-key", k));
            }
            srv.raw("GET", path, &h, Bytes::new())
                .await
                .err(404, "not_found");
            srv.raw("POST", path, &h, "{}").await.err(404, "not_found");
        }
    }
    // Every route, every other method: 405 with an Allow header.
    let mut templates: Vec<&str> = ROUTES.iter().map(|(_, p)| *p).collect();
    templates.dedup();
    for template in templates {
        let allowed: BTreeSet<&str> = ROUTES
            .iter()
            .filter(|(_, p)| *p == template)
            .map(|(m, _)| *m)
            .collect();
        let path = concrete(template, &id_for(template, &w));
        for method in [
            "GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE", "FOO", "CONNECTX",
        ] {
            if allowed.contains(method) {
                continue;
            }
            let r = srv
                .raw(method, &path, &[("x-api-key", &w.key)], Bytes::new())
                .await;
            assert_eq!(r.status, 405, "{method} {path}: {}", r.text());
            if method != "HEAD" {
                r.err(405, "method_not_allowed");
            }
            let allow: BTreeSet<String> = r
                .header("allow")
                .unwrap_or_else(|| panic!("{method} {path}: no Allow header"))
                .split(',')
                .map(|m| m.trim().to_owned())
                .collect();
            let want: BTreeSet<String> = allowed.iter().map(|m| (*m).to_owned()).collect();
            assert_eq!(allow, want, "{method} {path}");
        }
    }
    srv.assert_healthy().await;
}

#[tokio::test]
async fn queries_are_checked() {
    let w = world().await;
    let srv = &w.srv;
    let wal = &w.wallet;
    // The wallet search.
    let search: &[&[(&str, &str)]] = &[
        &[("q", r#"colour="red""#)],
        &[("q", r#"balance.value>="abc""#)],
        &[("q", r#"balance.value=>"0""#)],
        &[("q", r#"balance.value~"0""#)],
        &[("q", r#"balance.value>="0"#)],
        &[("q", r#"ccyCode"USD""#)],
        &[("q", r#"ccyCode="USD" OR ccyCode="EUR""#)],
        &[("q", r#"ccyCode="USD",,"#)],
        &[("q", r#"isFavourite="maybe""#)],
        &[("q", r#"status="frozen""#)],
        &[("q", r#"type="savings""#)],
        &[("q", r#"createdAt>"yesterday""#)],
        &[("q", "=")],
        &[("q", "\u{0}")],
        &[("sortBy", "colour:ASC")],
        &[("sortBy", "ccyCode:UP")],
        &[("sortBy", "ccyCode:ASC,")],
        &[("sortBy", ":ASC")],
        &[("limit", "0")],
        &[("limit", "1001")],
        &[("limit", "x")],
        &[("limit", "-1")],
        &[("limit", "1.5")],
        &[("limit", "99999999999999999999999")],
        &[("offset", "-1")],
        &[("offset", "x")],
        &[("offset", "99999999999999999999999")],
        &[("page", "2")],
        &[("limit", "1"), ("limit", "2")],
    ];
    for pairs in search {
        let r = srv
            .get(&format!("/v1/wallets?{}", query(pairs)), &w.key)
            .await;
        r.err(400, "invalid_query");
    }
    let big_q = format!("name=\"{}\"", "x".repeat(5_000));
    srv.get(&format!("/v1/wallets?{}", query(&[("q", &big_q)])), &w.key)
        .await
        .err(400, "invalid_query");
    // The history.
    let history: &[&[(&str, &str)]] = &[
        &[("asset", "usd")],
        &[("asset", "")],
        &[("type", "refund")],
        &[("status", "done")],
        &[("direction", "up")],
        &[("createdFrom", "yesterday")],
        &[("createdTo", "2026-13-01T00:00:00Z")],
        &[("createdFrom", "2026-01-01")],
        &[("minAmount", "abc")],
        &[("maxAmount", "1e3")],
        &[("minAmount", "1_000")],
        &[("sortBy", "id:ASC")],
        &[("sortBy", "amount:UP")],
        &[("limit", "0")],
        &[("limit", "1001")],
        &[("offset", "-1")],
        &[("after", "garbage")],
        &[("after", NO_TXN)],
        &[("q", "x")],
        &[("type", "credit"), ("type", "debit")],
    ];
    for pairs in history {
        let r = srv
            .get(
                &format!("/v1/wallets/{wal}/transactions?{}", query(pairs)),
                &w.key,
            )
            .await;
        r.err(400, "invalid_query");
    }
    // A cursor from another wallet's history is not this one's.
    srv.get(
        &format!("/v1/wallets/{wal}/transactions?after={}", w.settled),
        &w.key,
    )
    .await
    .err(400, "invalid_query");
    // The queue takes `asset` only.
    srv.get(&format!("/v1/wallets/{wal}/queue?limit=5"), &w.key)
        .await
        .err(400, "invalid_query");
    // The valid edges are fine.
    for pairs in [
        &[("limit", "1"), ("offset", "0")][..],
        &[("limit", "1000"), ("offset", "1000000")][..],
        &[("q", ""), ("sortBy", "")][..],
    ] {
        srv.get(&format!("/v1/wallets?{}", query(pairs)), &w.key)
            .await
            .ok(200);
    }
}

/// One of each business-rule refusal, in one place.
#[tokio::test]
async fn conflicts_answer_409_with_their_code() {
    let w = world().await;
    let srv = &w.srv;
    let k = &w.key;
    let wal = srv.create_wallet(k, "USD").await;
    srv.credit(k, &wal, "USD", "5").await;
    srv.post_json(
        &format!("/v1/wallets/{wal}/debits"),
        k,
        &json!({"asset": "USD", "amount": "6", "onInsufficientFunds": "reject"}),
    )
    .await
    .err(409, "insufficient_funds");
    srv.post_json(
        &format!("/v1/wallets/{wal}/reservations"),
        k,
        &json!({"asset": "USD", "amount": "6"}),
    )
    .await
    .err(409, "insufficient_funds");
    srv.post_empty(&format!("/v1/transactions/{}/settle", w.held), k)
        .await
        .err(409, "invalid_state");
    srv.post_empty(&format!("/v1/transactions/{}/capture", w.pending), k)
        .await
        .err(409, "invalid_state");
    srv.post_empty(&format!("/v1/transactions/{}/cancel", w.held), k)
        .await
        .err(409, "invalid_state");
    srv.post_empty(&format!("/v1/transactions/{}/release", w.queued), k)
        .await
        .err(409, "invalid_state");
    let status = format!("/v1/wallets/{wal}/status");
    srv.put_json(&status, k, &json!({"status": "closed"}))
        .await
        .err(409, "invalid_state");
    for (st, code) in [
        ("restricted", "wallet_restricted"),
        ("suspended", "wallet_suspended"),
    ] {
        srv.put_json(&status, k, &json!({"status": st}))
            .await
            .ok(200);
        srv.debit(k, &wal, "USD", "1").await.err(409, code);
        srv.post_json(
            "/v1/transfers",
            k,
            &json!({"fromWalletId": wal, "toWalletId": w.wallet, "asset": "USD", "amount": "1"}),
        )
        .await
        .err(409, code);
        let res = srv
            .post_json(
                "/v1/batch",
                k,
                &json!({"operations": [{"op": "reserve", "walletId": wal, "asset": "USD", "amount": "1"}]}),
            )
            .await
            .ok(200);
        assert_eq!(res["results"][0]["error"]["code"], code, "{res}");
    }
    srv.put_json(&status, k, &json!({"status": "active"}))
        .await
        .ok(200);
    srv.debit(k, &wal, "USD", "5").await.ok(201);
    srv.put_json(&status, k, &json!({"status": "closed"}))
        .await
        .ok(200);
    srv.debit(k, &wal, "USD", "1")
        .await
        .err(409, "wallet_closed");
    srv.post_json(
        "/v1/transfers",
        k,
        &json!({"fromWalletId": w.wallet, "toWalletId": wal, "asset": "USD", "amount": "1"}),
    )
    .await
    .err(409, "wallet_closed");
    // A closed wallet's money cannot come back either.
    srv.post_json(
        &format!("/v1/wallets/{wal}/credits"),
        k,
        &json!({"asset": "USD", "amount": "1", "pending": true}),
    )
    .await
    .err(409, "wallet_closed");
}

/// A (wallet, asset) queue holds at most 10,000 items; past it: 429.
#[tokio::test]
async fn a_full_queue_answers_429() {
    let srv = Server::start().await;
    let key = srv.client_key().await;
    let wallet = srv.create_wallet(&key, "USD").await;
    let other = srv.create_wallet(&key, "USD").await;
    let debit = json!({"op": "debit", "walletId": wallet, "asset": "USD", "amount": "1"});
    let batch = json!({"operations": vec![debit; 5_000]});
    for round in 1..=2 {
        let res = srv.post_json("/v1/batch", &key, &batch).await.ok(200);
        let res = res["results"].as_array().expect("results");
        assert_eq!(res.len(), 5_000);
        assert!(
            res.iter().all(|r| r["data"]["status"] == "awaiting_funds"),
            "round {round}: every debit waits"
        );
        assert_eq!(res[4_999]["data"]["queuePosition"], 5_000 * round);
    }
    let k = idem();
    let one = r#"{"asset":"USD","amount":"1"}"#;
    let path = format!("/v1/wallets/{wallet}/debits");
    srv.post(&path, &key, &k, one).await.err(429, "queue_full");
    srv.post_json(
        "/v1/transfers",
        &key,
        &json!({"fromWalletId": wallet, "toWalletId": other, "asset": "USD", "amount": "1"}),
    )
    .await
    .err(429, "queue_full");
    let res = srv
        .post_json(
            "/v1/batch",
            &key,
            &json!({"operations": [{"op": "debit", "walletId": wallet, "asset": "USD", "amount": "1"}]}),
        )
        .await
        .ok(200);
    assert_eq!(
        (
            &res["results"][0]["status"],
            &res["results"][0]["error"]["code"]
        ),
        (&json!(429), &json!("queue_full"))
    );
    assert_eq!(
        srv.balance(&key, &wallet, "USD").await["queued"],
        "10000.00"
    );
    // Room again after a cancel; the 429 was not remembered for its key.
    let q = srv
        .get(&format!("/v1/wallets/{wallet}/transactions?limit=1"), &key)
        .await
        .ok(200);
    srv.post_empty(&format!("/v1/transactions/{}/cancel", s(&q[0]["id"])), &key)
        .await
        .ok(200);
    let t = srv.post(&path, &key, &k, one).await.ok(201);
    assert_eq!(
        (&t["status"], &t["queuePosition"]),
        (&json!("awaiting_funds"), &json!(10_000))
    );
}

#[tokio::test]
async fn batch_sizes_are_bounded() {
    let w = world().await;
    let srv = &w.srv;
    let nope = json!({"op": "nope"});
    srv.post_json(
        "/v1/batch",
        &w.key,
        &json!({"operations": vec![nope.clone(); 8_193]}),
    )
    .await
    .err(400, "invalid_request");
    let res = srv
        .post_json(
            "/v1/batch",
            &w.key,
            &json!({"operations": vec![nope; 8_192]}),
        )
        .await
        .ok(200);
    let res = res["results"].as_array().expect("results");
    assert_eq!(res.len(), 8_192);
    assert!(res.iter().all(|r| r["error"]["code"] == "invalid_request"));
    // 8,192 real transfers (over 1 MiB, the other routes' limit) fit.
    let transfer = json!({"op": "transfer", "fromWalletId": w.wallet, "toWalletId": w.multi,
        "asset": "USD", "amount": "0.01", "onInsufficientFunds": "reject",
        "reference": "a reference of the kind a payout carries"});
    let batch = json!({"operations": vec![transfer; 8_192]});
    assert!(batch.to_string().len() > 1024 * 1024);
    let res = srv.post_json("/v1/batch", &w.key, &batch).await.ok(200);
    assert_eq!(res["results"].as_array().map(Vec::len), Some(8_192));
    // Each malformed operation answers for itself.
    let ops = json!({"operations": [
        null, 1, "credit", [], {}, {"op": null}, {"op": 5}, {"op": "credit"},
        {"op": "credit", "walletId": 5, "asset": "USD", "amount": "1"},
        {"op": "credit", "walletId": "nope", "asset": "USD", "amount": "1"},
        {"op": "credit", "walletId": w.wallet, "asset": "USD", "amount": "1", "extra": 1},
        {"op": "credit", "walletId": w.wallet, "asset": "USD"},
        {"op": "settle"},
        {"op": "settle", "transactionId": w.pending, "amount": "1"},
        {"op": "transfer", "fromWalletId": w.wallet, "asset": "USD", "amount": "1"},
        {"op": "CREDIT", "walletId": w.wallet, "asset": "USD", "amount": "1"},
        {"op": "transfer", "walletId": w.wallet, "fromWalletId": w.wallet,
         "toWalletId": w.wallet, "asset": "USD", "amount": "1"},
        {"op": "settle", "transactionId": w.pending, "walletId": w.wallet},
        {"op": "credit", "walletId": null, "asset": "USD", "amount": "1"},
        {"op": "credit", "walletId": w.wallet, "asset": "USD", "amount": "1"},
    ]});
    // A field given twice (serde_json's `json!` cannot write one).
    let twice = |field: &str, value: &str| {
        format!(
            r#"{{"op":"credit","walletId":"{}","asset":"USD","amount":"1",{field}:{value}}}"#,
            w.wallet
        )
    };
    let ops = ops.to_string();
    let ops = format!(
        "{},{},{},{}]}}",
        ops.strip_suffix("]}")
            .expect("an object ending in its list"),
        twice(r#""op""#, r#""debit""#),
        twice(r#""walletId""#, &format!(r#""{}""#, w.wallet)),
        twice(r#""asset""#, r#""EUR""#)
    );
    let res = srv
        .post("/v1/batch", &w.key, "batch-shapes", &ops)
        .await
        .ok(200);
    let res = res["results"].as_array().expect("results");
    assert_eq!(res.len(), 23);
    let bad: Vec<_> = res[..19].iter().chain(&res[20..]).collect();
    for (i, r) in bad.into_iter().enumerate() {
        let i = if i < 19 { i } else { i + 1 };
        assert_eq!(r["status"], 400, "op {i}: {r}");
        assert_eq!(r["error"]["code"], "invalid_request", "op {i}: {r}");
        assert!(
            s(&r["error"]["message"]).starts_with(&format!("operations[{i}]")),
            "op {i}: {r}"
        );
    }
    assert_eq!(res[19]["status"], 201, "{}", res[19]);
    for (i, what) in [(20, "`op`"), (21, "`walletId`"), (22, "`asset`")] {
        let message = s(&res[i]["error"]["message"]);
        assert!(
            message.contains(&format!("duplicate field {what}")),
            "{message}"
        );
    }
    assert_eq!(
        srv.balance(&w.key, &w.wallet, "USD").await["cash"],
        "101.00"
    );
}

/// Things no client should send, and the server must still answer with a
/// JSON error (the harness checks the shape of every answer).
#[tokio::test]
async fn nasty_requests_get_json_errors() {
    let w = world().await;
    let srv = &w.srv;
    let k = w.key.as_str();
    let wal = w.wallet.as_str();
    let credits = format!("/v1/wallets/{wal}/credits");
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let deep_obj = |n: usize| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n));
    let huge_digits = format!("1{}", "0".repeat(5_000));
    let long_frac = format!("0.{}1", "0".repeat(5_000));

    // Bodies, POSTed to every write route.
    let bodies: Vec<Vec<u8>> =
        vec![
        b"\xff\xfe\xfd".to_vec(),
        b"{\"asset\":\"USD\",\"amount\":\"1\",\"reference\":\"\xff\"}".to_vec(),
        b"{\"asset\":\"US\xc3\"}".to_vec(),
        b"\x00\x00\x00\x00".to_vec(),
        b"{\"asset\":\"USD\",\"amount\":\"1\",\"reference\":\"a\\u0000b\"}".to_vec(),
        b"{\"asset\":\"US\\u0000D\",\"amount\":\"1\"}".to_vec(),
        b"{\"asset\":\"USD\",\"amount\":\"1\\u0000\"}".to_vec(),
        b"{\"name\":\"\\ud800\",\"type\":\"individual\"}".to_vec(),
        b"\xef\xbb\xbf{\"asset\":\"USD\",\"amount\":\"1\"}".to_vec(),
        deep(100_000).into_bytes(),
        deep_obj(10_000).into_bytes(),
        format!(r#"{{"asset":"USD","amount":"1","metadata":{}}}"#, deep(100)).into_bytes(),
        format!(r#"{{"asset":"USD","amount":{}}}"#, deep(1_000)).into_bytes(),
        format!(r#"{{"operations":[{}]}}"#, deep(1_000)).into_bytes(),
        format!(r#"{{"asset":"USD","amount":{huge_digits}}}"#).into_bytes(),
        format!(r#"{{"asset":"USD","amount":"{huge_digits}"}}"#).into_bytes(),
        format!(r#"{{"asset":"USD","amount":{long_frac}}}"#).into_bytes(),
        br#"{"asset":"USD","amount":1e999999999999}"#.to_vec(),
        br#"{"asset":"USD","amount":-1e-999999999999}"#.to_vec(),
        br#"{"asset":"USD","amount":18446744073709551616}"#.to_vec(),
        br#"{"asset":"USD","amount":"1","asset":"EUR"}"#.to_vec(),
        br#"{"isFavourite":true,"isFavourite":false}"#.to_vec(),
        format!(r#"{{"{}":1}}"#, "k".repeat(100_000)).into_bytes(),
        format!(r#"{{"name":"{}","type":"individual"}}"#, "\\u00e9".repeat(50_000)).into_bytes(),
        br#"{"operations":[{"op":"credit","walletId":"wal_\u0000","asset":"USD","amount":"1"}]}"#
            .to_vec(),
        b"1".repeat(500_000),
        b" ".repeat(500_000),
    ];
    for (method, template) in ROUTES.iter().copied().filter(|(m, _)| is_write(m)) {
        let path = concrete(template, &id_for(template, &w));
        let key = if template.starts_with("/v1/admin/") {
            ADMIN_KEY
        } else {
            k
        };
        for body in &bodies {
            let kk = idem();
            let r = srv
                .raw(
                    method,
                    &path,
                    &[
                        ("x-api-key", key),
                        ("x-idempotency-key", &kk),
                        ("content-type", "application/json"),
                    ],
                    body.clone(),
                )
                .await;
            let unavailable_ok = template == "/v1/admin/snapshots" && r.status == 503;
            assert!(
                r.status < 500 || unavailable_ok,
                "{method} {path}: {}",
                r.text()
            );
        }
    }

    // Ids with the wrong prefix or shape, in paths and bodies.
    let ulid = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let long_id = format!("wal_{}", "Z".repeat(10_000));
    let bad_ids = [
        format!("txn_{ulid}"),
        format!("cus_{ulid}"),
        format!("cli_{ulid}"),
        format!("WAL_{ulid}"),
        format!("wal_{}", ulid.to_lowercase()),
        format!("wal_{ulid}X"),
        format!("wal_{}", &ulid[..25]),
        "wal_".to_owned(),
        "wal_ZZZZZZZZZZZZZZZZZZZZZZZZZZ".to_owned(),
        "wal_8ZZZZZZZZZZZZZZZZZZZZZZZZZ".to_owned(),
        format!("wal_{}", &w.held[4..]),
        w.held.clone(),
        w.customer.clone(),
        wal.to_owned(),
        long_id,
        "%F0%9F%92%A9".to_owned(),
        "null".to_owned(),
        "USDT".to_owned(),
        "usd".to_owned(),
    ];
    for id in &bad_ids {
        for template in [
            "/v1/wallets/{id}",
            "/v1/wallets/{id}/balance",
            "/v1/wallets/{id}/transactions",
            "/v1/wallets/{id}/queue",
            "/v1/transactions/{id}",
            "/v1/customers/{id}",
        ] {
            let path = concrete(template, id);
            let r = srv.get(&path, k).await;
            assert!(
                [200, 400, 404].contains(&r.status),
                "GET {path}: {}",
                r.text()
            );
            // Only an id of the right kind, or a currency code, can be found.
            if r.status == 200 {
                let right_kind = (template.starts_with("/v1/wallets/") && id == wal)
                    || (template == "/v1/transactions/{id}" && *id == w.held)
                    || (template == "/v1/customers/{id}" && *id == w.customer)
                    || (template == "/v1/wallets/{id}" && id.as_str() == "USDT");
                assert!(right_kind, "GET {path}: {}", r.text());
            }
        }
        for template in [
            "/v1/transactions/{id}/settle",
            "/v1/transactions/{id}/capture",
        ] {
            let path = concrete(template, id);
            let r = srv.post_empty(&path, k).await;
            assert!(
                [200, 404, 409].contains(&r.status),
                "POST {path}: {}",
                r.text()
            );
        }
        for body in [
            json!({"fromWalletId": id, "toWalletId": wal, "asset": "USD", "amount": "1"}),
            json!({"fromWalletId": wal, "toWalletId": id, "asset": "USD", "amount": "1"}),
        ] {
            let r = srv.post_json("/v1/transfers", k, &body).await;
            assert!([400, 404].contains(&r.status), "{body}: {}", r.text());
        }
        let r = srv
            .post_json(
                "/v1/wallets",
                k,
                &json!({"ccyCode": "USD", "customerId": id}),
            )
            .await;
        assert!(
            [400, 404].contains(&r.status) || *id == w.customer,
            "customerId {id}: {}",
            r.text()
        );
    }

    // Very long or odd header values.
    let long = "v".repeat(64 * 1024);
    srv.raw("GET", "/v1/wallets", &[("x-api-key", &long)], Bytes::new())
        .await
        .err(401, "unauthorized");
    srv.raw(
        "POST",
        &credits,
        &[
            ("x-api-key", k),
            ("x-idempotency-key", &long),
            ("content-type", "application/json"),
        ],
        r#"{"asset":"USD","amount":"1"}"#,
    )
    .await
    .err(400, "idempotency_key_required");
    srv.raw(
        "POST",
        &credits,
        &[
            ("x-api-key", k),
            ("x-idempotency-key", "x"),
            ("content-type", &long),
        ],
        r#"{"asset":"USD","amount":"1"}"#,
    )
    .await
    .err(415, "unsupported_media_type");
    srv.raw(
        "GET",
        "/v1/wallets",
        &[("x-api-key", k), ("user-agent", &long), ("x-junk", &long)],
        Bytes::new(),
    )
    .await
    .ok(200);
    srv.send(
        hyper::Method::GET,
        "/v1/wallets",
        &[("x-api-key", b"\xff\xfe\x80")],
        Bytes::new(),
    )
    .await
    .err(401, "unauthorized");
    // Two API keys: the first counts; a wrong one first is refused.
    srv.raw(
        "GET",
        "/v1/wallets",
        &[("x-api-key", "nope"), ("x-api-key", k)],
        Bytes::new(),
    )
    .await
    .err(401, "unauthorized");

    // Odd query strings.
    for q in [
        "%",
        "%zz",
        "%ff%fe",
        "q=%00",
        "&&&",
        "=",
        "q",
        "q=%22%22%22",
        "limit=%2B1",
        "limit=1%00",
    ] {
        let r = srv.get(&format!("/v1/wallets?{q}"), k).await;
        assert!([200, 400].contains(&r.status), "?{q}: {}", r.text());
        let r = srv
            .get(&format!("/v1/wallets/{wal}/transactions?{q}"), k)
            .await;
        assert!([200, 400].contains(&r.status), "?{q}: {}", r.text());
    }

    // Wrong types at every field of every body.
    let odd: [Value; 12] = [
        Value::Null,
        json!(true),
        json!(0),
        json!(-1),
        json!(1.5),
        json!(""),
        json!("x"),
        json!([]),
        json!({}),
        json!([1]),
        json!({"a": 1}),
        json!("\u{0}"),
    ];
    let templates: Vec<(String, Value)> = vec![
        (
            credits.clone(),
            json!({"asset": "USD", "amount": "1", "pending": false, "reference": "r", "metadata": {}}),
        ),
        (
            format!("/v1/wallets/{wal}/debits"),
            json!({"asset": "USD", "amount": "1", "onInsufficientFunds": "reject", "expiresAt": rfc3339_in(60), "reference": "r"}),
        ),
        (
            format!("/v1/wallets/{wal}/reservations"),
            json!({"asset": "USD", "amount": "1", "expiresAt": rfc3339_in(60), "reference": "r"}),
        ),
        (
            "/v1/transfers".into(),
            json!({"fromWalletId": w.multi, "toWalletId": wal, "asset": "USD", "amount": "1", "onInsufficientFunds": "reject"}),
        ),
        (
            "/v1/conversions".into(),
            json!({"fromWalletId": w.multi, "toWalletId": wal, "sellAsset": "EUR", "buyAsset": "USD", "sellAmount": "1", "rate": "1"}),
        ),
        (
            "/v1/wallets".into(),
            json!({"ccyCode": "USD", "name": "n", "description": "d", "type": "general"}),
        ),
        (
            "/v1/customers".into(),
            json!({"name": "n", "type": "individual", "ccyCode": "USD"}),
        ),
        (
            format!("/v1/wallets/{wal}/settings"),
            json!({"isFavourite": true, "name": "n", "description": "d"}),
        ),
        (
            format!("/v1/wallets/{wal}/status"),
            json!({"status": "active", "reason": "r"}),
        ),
        (
            format!("/v1/transactions/{}/capture", w.held),
            json!({"amount": "0.01"}),
        ),
        (
            "/v1/batch".into(),
            json!({"operations": [{"op": "credit", "walletId": wal, "asset": "USD", "amount": "1"}]}),
        ),
    ];
    for (path, body) in &templates {
        let method = if path.ends_with("/settings") || path.ends_with("/status") {
            "PUT"
        } else {
            "POST"
        };
        let fields: Vec<String> = body.as_object().expect("object").keys().cloned().collect();
        for field in &fields {
            for v in &odd {
                let mut b = body.clone();
                b[field.as_str()] = v.clone();
                let r = srv.write(method, path, k, &idem(), &b.to_string()).await;
                assert!(
                    [200, 201, 400, 404, 409].contains(&r.status),
                    "{method} {path} {b}: {}",
                    r.text()
                );
            }
        }
    }
    srv.assert_healthy().await;
    let audit = srv.quiet_audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
}

/// A random JSON-ish value: usually valid JSON, sometimes not.
fn fuzz_value(rng: &mut Rng, ids: &[String], depth: usize) -> String {
    let scalars: &[&str] = &[
        "null",
        "true",
        "false",
        "0",
        "1",
        "-1",
        "0.5",
        "1e3",
        "1e400",
        "\"\"",
        "\"USD\"",
        "\"usd\"",
        "\"EUR\"",
        "\"BTC\"",
        "\"JPY\"",
        "\"XYZ\"",
        "\"10.50\"",
        "\"0.001\"",
        "\"-5\"",
        "\"1_000\"",
        "\"queue\"",
        "\"reject\"",
        "\"individual\"",
        "\"business\"",
        "\"active\"",
        "\"closed\"",
        "\"suspended\"",
        "\"restricted\"",
        "\"credit\"",
        "\"debit\"",
        "\"reserve\"",
        "\"transfer\"",
        "\"convert\"",
        "\"capture\"",
        "\"settle\"",
        "\"2030-01-01T00:00:00Z\"",
        "\"2000-01-01T00:00:00Z\"",
        "\"\\u0000\"",
        "\"\\ud800\"",
        "99999999999999999999999999999",
        "\"79228162514264337593543950335\"",
        "[",
        "{",
        "\"unterminated",
        "NaN",
        "-",
        "01",
    ];
    match rng.below(if depth > 3 { 3 } else { 6 }) {
        0 | 1 => (*rng.pick(scalars)).to_owned(),
        2 => format!("\"{}\"", rng.pick(ids)),
        3 => {
            let n = rng.below(4);
            let items: Vec<String> = (0..n).map(|_| fuzz_value(rng, ids, depth + 1)).collect();
            format!("[{}]", items.join(","))
        }
        _ => fuzz_object(rng, ids, depth + 1),
    }
}

fn fuzz_object(rng: &mut Rng, ids: &[String], depth: usize) -> String {
    let fields: &[&str] = &[
        "asset",
        "amount",
        "pending",
        "reference",
        "metadata",
        "onInsufficientFunds",
        "expiresAt",
        "fromWalletId",
        "toWalletId",
        "sellAsset",
        "buyAsset",
        "sellAmount",
        "rate",
        "name",
        "type",
        "ccyCode",
        "assets",
        "customerId",
        "description",
        "isFavourite",
        "status",
        "reason",
        "operations",
        "op",
        "walletId",
        "transactionId",
        "colour",
        "",
    ];
    let n = rng.below(7);
    let items: Vec<String> = (0..n)
        .map(|_| format!("\"{}\":{}", rng.pick(fields), fuzz_value(rng, ids, depth)))
        .collect();
    format!("{{{}}}", items.join(","))
}

/// A few hundred random requests from fragments: every answer is JSON and
/// below 500, and the server is healthy and consistent afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzed_requests_never_break_the_server() {
    let w = world().await;
    let srv = &w.srv;
    let mut rng = Rng::new(0x5EED_1234_ABCD_0001);
    let ids: Vec<String> = vec![
        w.wallet.clone(),
        w.multi.clone(),
        w.other_wallet.clone(),
        w.held.clone(),
        w.pending.clone(),
        w.queued.clone(),
        w.settled.clone(),
        w.other_held.clone(),
        w.customer.clone(),
        w.other_customer.clone(),
        NO_WALLET.to_owned(),
        NO_TXN.to_owned(),
        "USD".to_owned(),
        "x".to_owned(),
        "wal_".to_owned(),
        "%00".to_owned(),
        "..".to_owned(),
    ];
    let methods = [
        "GET", "GET", "POST", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS",
    ];
    let queries = [
        "",
        "",
        "limit=2",
        "limit=0",
        "offset=1",
        "q=balance.value%3E%3D%220%22",
        "q=%22",
        "sortBy=ccyCode:ASC",
        "sortBy=amount:DESC",
        "asset=USD",
        "asset=usd",
        "type=credit",
        "status=held",
        "direction=in",
        "minAmount=1",
        "after=x",
        "createdFrom=2000-01-01T00:00:00Z",
        "zzz=1",
        "%ff",
    ];
    let content_types = [
        Some("application/json"),
        Some("application/json"),
        None,
        Some("text/plain"),
        Some("application/json; charset=latin1"),
    ];
    let mut keys_used: Vec<String> = Vec::new();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    for i in 0..600 {
        let method = *rng.pick(&methods);
        let (_, template) = *rng.pick(ROUTES);
        let mut path = if rng.chance(90) {
            concrete(template, rng.pick(&ids[..]).as_str())
        } else {
            format!("/v1/{}", rng.pick(&ids))
        };
        let q = *rng.pick(&queries);
        if !q.is_empty() {
            path = format!("{path}?{q}");
        }
        let api_key = match rng.below(10) {
            0 => None,
            1 => Some("nope".to_owned()),
            2 => Some(ADMIN_KEY.to_owned()),
            3 => Some(w.other_key.clone()),
            _ => Some(w.key.clone()),
        };
        let idem_key = match rng.below(10) {
            0 => None,
            1 => Some(String::new()),
            2 if !keys_used.is_empty() => Some(rng.pick(&keys_used).clone()),
            _ => {
                let k = format!("fuzz-{i}");
                keys_used.push(k.clone());
                Some(k)
            }
        };
        let body = match rng.below(10) {
            0 => String::new(),
            1 => fuzz_value(&mut rng, &ids, 0),
            _ => fuzz_object(&mut rng, &ids, 0),
        };
        let mut headers: Vec<(&str, &str)> = Vec::new();
        if let Some(k) = &api_key {
            headers.push(("x-api-key", k));
        }
        if let Some(k) = &idem_key {
            headers.push(("x-idempotency-key", k));
        }
        if let Some(ct) = *rng.pick(&content_types) {
            headers.push(("content-type", ct));
        }
        let r = srv.raw(method, &path, &headers, body.clone()).await;
        let unavailable_ok = path.starts_with("/v1/admin/snapshots") && r.status == 503;
        assert!(
            r.status < 500 || unavailable_ok,
            "request {i}: {method} {path} {body}: {}",
            r.text()
        );
        *statuses.entry(r.status).or_default() += 1;
    }
    // The fuzz reached past the front door.
    assert!(
        statuses.keys().any(|s| *s == 200 || *s == 201),
        "{statuses:?}"
    );
    assert!(statuses.len() >= 6, "{statuses:?}");
    srv.assert_healthy().await;
    let audit = srv.quiet_audit().await;
    assert_eq!(audit["ok"], true, "{audit}");
    // Still serving normal traffic.
    let wal = srv.create_wallet(&w.key, "USD").await;
    srv.credit(&w.key, &wal, "USD", "1").await;
}

// ---- Requests hyper refuses before any of our code runs ----
//
// A header block over hyper's buffer (~400 KiB) or a request line over its
// URI limit (64 KiB) is not an HTTP request hyper will hand on: it answers
// 431 or 414 itself, with an empty body, and closes the connection. This
// is the one documented exception to "every answer is JSON" (README,
// ARCHITECTURE.md); these tests pin it down and check the server goes on.

/// Oversized headers: hyper's own 431, and the server stays healthy.
#[tokio::test]
async fn oversized_headers_are_refused_by_hyper_itself() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = Server::start().await;
    let mut sock = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /v1/wallets HTTP/1.1\r\nHost: x\r\nX-API-KEY: {}\r\nConnection: close\r\n\r\n",
        "h".repeat(600 * 1024)
    );
    // hyper may answer and close before it has read it all.
    let _ = sock.write_all(request.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sock.read_to_end(&mut answer),
    )
    .await
    .expect("an answer within 10 s");
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 431"), "{answer}");
    srv.assert_healthy().await;
}

/// An over-long URI: hyper's own 414 (sent over a plain socket: hyper's
/// client refuses to send such a URI), and the server stays healthy.
#[tokio::test]
async fn overlong_uris_are_refused_by_hyper_itself() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = Server::start().await;
    let key = srv.client_key().await;
    let mut sock = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    let request = format!(
        "GET /v1/wallets/{} HTTP/1.1\r\nHost: x\r\nX-API-KEY: {key}\r\nConnection: close\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    sock.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        sock.read_to_end(&mut answer),
    )
    .await
    .expect("an answer within 10 s")
    .expect("read");
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 414"), "{answer}");
    srv.assert_healthy().await;
}

// ---- Defects found by these tests, fixed ----

/// API.md: a wrong type is 400 `invalid_request`. A JSON array where an
/// object belongs is read as the struct's fields in declaration order
/// (serde's sequence form of a struct), on every body: a credit of
/// `["USD","5",false,null,null]` credits 5 USD, `[1]` captures 1, `[]`
/// settles, `["x"]` creates a client.
#[tokio::test]
async fn json_arrays_are_not_request_bodies() {
    let w = world().await;
    let srv = &w.srv;
    let credits = format!("/v1/wallets/{}/credits", w.wallet);
    let batch = json!([[{"op": "credit", "walletId": w.wallet, "asset": "USD", "amount": "1"}]]);
    for (method, path, body) in [
        (
            "POST",
            credits.clone(),
            r#"["USD","5",false,null,null]"#.to_owned(),
        ),
        (
            "POST",
            format!("/v1/wallets/{}/debits", w.wallet),
            r#"["USD","1","reject",null,null,null]"#.to_owned(),
        ),
        (
            "POST",
            format!("/v1/transactions/{}/capture", w.held),
            "[1]".to_owned(),
        ),
        (
            "POST",
            format!("/v1/transactions/{}/settle", w.pending),
            "[]".to_owned(),
        ),
        (
            "PUT",
            format!("/v1/wallets/{}/settings", w.wallet),
            r#"[true,"renamed",null]"#.to_owned(),
        ),
        (
            "POST",
            "/v1/customers".to_owned(),
            r#"["n","individual",null,null]"#.to_owned(),
        ),
        ("POST", "/v1/batch".to_owned(), batch.to_string()),
    ] {
        srv.write(method, &path, &w.key, &idem(), &body)
            .await
            .err(400, "invalid_request");
    }
    srv.raw(
        "POST",
        "/v1/admin/clients",
        &[("x-api-key", ADMIN_KEY)],
        r#"["arrayco"]"#,
    )
    .await
    .err(400, "invalid_request");
    let b = srv.balance(&w.key, &w.wallet, "USD").await;
    assert_eq!(
        (&b["cash"], &b["reserved"], &b["pending"]),
        (&json!("100.00"), &json!("10.00"), &json!("5.00"))
    );
}

/// Metadata nested 1,000 deep (2 KB, under the 16 KiB bound) is stored and
/// echoed back; the answers holding it are then deeper than common JSON
/// parsers accept (serde_json stops at 128), so the wallet's history can no
/// longer be read by such clients. Nesting should be bounded at the edge.
#[tokio::test]
async fn deeply_nested_metadata_is_refused() {
    let w = world().await;
    let srv = &w.srv;
    let deep = format!("{}{}", "[".repeat(1_000), "]".repeat(1_000));
    let body = format!(r#"{{"asset":"USD","amount":"1","metadata":{deep}}}"#);
    srv.post(
        &format!("/v1/wallets/{}/credits", w.wallet),
        &w.key,
        &idem(),
        &body,
    )
    .await
    .err(400, "invalid_request");
    srv.get(&format!("/v1/wallets/{}/transactions", w.wallet), &w.key)
        .await
        .ok(200);
}

/// A clean stop leaves a clean log: no panic, no ERROR line. (The log's
/// writer thread once joined itself on SIGTERM when the journal's last
/// reference went away inside a write callback; ten stops made it show.)
#[tokio::test]
async fn shutdown_never_panics_in_the_log_writer() {
    for round in 0..10 {
        let mut srv = Server::start().await;
        let key = srv.client_key().await;
        let wallet = srv.create_wallet(&key, "USD").await;
        for _ in 0..5 {
            srv.credit(&key, &wallet, "USD", "1").await;
        }
        srv.sigterm();
        let status = srv.wait_exit(std::time::Duration::from_secs(10)).await;
        assert_eq!(status.and_then(|s| s.code()), Some(0), "round {round}");
        let log = srv.log();
        assert!(!log.contains("panicked"), "round {round}: {log}");
        assert!(!log.contains("ERROR"), "round {round}: {log}");
    }
}

/// A body with a field given twice is refused on every endpoint ("duplicate
/// field"), but inside a batch operation the last one silently wins:
/// `{"op":"debit","op":"credit",…}` credits, and `"amount":"1","amount":"1000"`
/// credits 1,000. The same operation must mean the same thing either way
/// (and an ambiguous payment instruction should be refused).
#[tokio::test]
async fn batch_operations_refuse_duplicate_fields() {
    let w = world().await;
    let srv = &w.srv;
    let wal = &w.wallet;
    srv.post(
        &format!("/v1/wallets/{wal}/credits"),
        &w.key,
        &idem(),
        r#"{"asset":"USD","amount":"1","amount":"1000"}"#,
    )
    .await
    .err(400, "invalid_request");
    let body = format!(
        r#"{{"operations":[
            {{"op":"credit","walletId":"{wal}","asset":"USD","amount":"1","amount":"1000"}},
            {{"op":"debit","op":"credit","walletId":"{wal}","asset":"USD","amount":"2"}}
        ]}}"#
    );
    let res = srv.post("/v1/batch", &w.key, &idem(), &body).await.ok(200);
    for i in 0..2 {
        assert_eq!(
            res["results"][i]["error"]["code"], "invalid_request",
            "operation {i}: {res}"
        );
    }
    assert_eq!(srv.balance(&w.key, wal, "USD").await["cash"], "100.00");
}

/// A batch operation whose `op` comes first is read in one pass; anywhere
/// else it is read field by field first. Either way it must be answered the
/// same, errors in the same order: the object's own (a batch field twice),
/// then `op`, the target's field, the body, and the target itself (for
/// credit, debit and reserve the wallet before the body).
#[tokio::test]
async fn batch_operations_answer_the_same_whatever_the_field_order() {
    let w = world().await;
    // A wallet of its own, funded: the world's has nothing available.
    let c = w
        .srv
        .post_json(
            "/v1/customers",
            &w.key,
            &json!({"name": "Order", "type": "individual"}),
        )
        .await
        .ok(201);
    let wal = &s(&c["walletId"]).to_owned();
    w.srv.credit(&w.key, wal, "USD", "100").await;
    let (theirs, held) = (&w.other_wallet, &w.held);
    let unknown_txn = "txn_01ARZ3NDEKTSV4RRFFQ69G5FAV";
    // (op, the other fields as JSON members, the status op-first must get)
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "credit",
            format!(r#""walletId":"{wal}","asset":"USD","amount":"1""#),
            201,
        ),
        (
            "debit",
            format!(r#""walletId":"{wal}","asset":"USD","amount":"1""#),
            201,
        ),
        (
            "reserve",
            format!(r#""walletId":"{wal}","asset":"USD","amount":"1""#),
            201,
        ),
        ("credit", r#""asset":"USD","amount":"1""#.into(), 400),
        (
            "credit",
            r#""walletId":5,"asset":"USD","amount":"1""#.into(),
            400,
        ),
        (
            "debit",
            r#""walletId":null,"asset":"USD","amount":"1""#.into(),
            400,
        ),
        // Their wallet, and a body with an unknown field: the wallet first.
        (
            "credit",
            format!(r#""walletId":"{theirs}","asset":"USD","amount":"1","x":1"#),
            404,
        ),
        (
            "credit",
            format!(r#""walletId":"{wal}","asset":"USD","amount":"1","x":1"#),
            400,
        ),
        (
            "credit",
            format!(r#""walletId":"{wal}","walletId":"{wal}","asset":"USD","amount":"1""#),
            400,
        ),
        (
            "credit",
            format!(r#""op":"debit","walletId":"{wal}","asset":"USD","amount":"1""#),
            400,
        ),
        (
            "transfer",
            format!(
                r#""fromWalletId":"{wal}","toWalletId":"{}","asset":"USD","amount":"1""#,
                w.multi
            ),
            201,
        ),
        (
            "transfer",
            format!(
                r#""walletId":"{wal}","fromWalletId":"{wal}","toWalletId":"{}","asset":"USD","amount":"1""#,
                w.multi
            ),
            400,
        ),
        (
            "transfer",
            format!(r#""fromWalletId":"{wal}","toWalletId":"{theirs}","asset":"USD","amount":"1""#),
            404,
        ),
        (
            "transfer",
            format!(
                r#""fromWalletId":"{wal}","toWalletId":"{}","asset":"USD","amount":"-1""#,
                w.multi
            ),
            400,
        ),
        ("capture", r#""amount":"1""#.into(), 400),
        // An unknown transaction, and a body with an unknown field: the body first.
        (
            "capture",
            format!(r#""transactionId":"{unknown_txn}","x":1"#),
            400,
        ),
        (
            "capture",
            format!(r#""transactionId":"{unknown_txn}""#),
            404,
        ),
        (
            "release",
            format!(r#""transactionId":"{held}","amount":"1""#),
            400,
        ),
        (
            "capture",
            format!(r#""transactionId":"{held}","transactionId":"{held}""#),
            400,
        ),
        ("frobnicate", format!(r#""walletId":"{wal}""#), 400),
        (
            "credit",
            format!(
                r#""transactionId":"{held}","transactionId":"{held}","walletId":"{wal}","asset":"USD","amount":"1""#
            ),
            400,
        ),
    ];
    let first: Vec<String> = cases
        .iter()
        .map(|(op, rest, _)| format!(r#"{{"op":"{op}",{rest}}}"#))
        .collect();
    let last: Vec<String> = cases
        .iter()
        .map(|(op, rest, _)| format!(r#"{{{rest},"op":"{op}"}}"#))
        .collect();
    let answer = |res: &Value, i: usize| {
        let r = &res["results"][i];
        // Without its place: "operations[i]: " and serde's " at line 1 column N".
        let message = r["error"]["message"].as_str().unwrap_or("");
        let message = message.replacen(&format!("operations[{i}]: "), "", 1);
        let message = message.split(" at line ").next().unwrap_or("").to_owned();
        (
            r["status"].clone(),
            r["error"]["code"].clone(),
            message,
            r["data"]["type"].clone(),
        )
    };
    let mut answers = Vec::new();
    for ops in [&first, &last] {
        let body = format!(r#"{{"operations":[{}]}}"#, ops.join(","));
        answers.push(srv_ok(&w, &body).await);
    }
    for (i, (op, rest, status)) in cases.iter().enumerate() {
        let (a, b) = (answer(&answers[0], i), answer(&answers[1], i));
        assert_eq!(a, b, "{op} {{{rest}}}: op first, then op last");
        assert_eq!(a.0, json!(status), "{op} {{{rest}}}: {:?}", a);
    }
}

async fn srv_ok(w: &World, body: &str) -> Value {
    w.srv.post("/v1/batch", &w.key, &idem(), body).await.ok(200)
}

/// A body that never finishes arriving is cut off at the request timeout,
/// and the answer says that nothing was done (no operation had started).
#[tokio::test]
async fn a_body_that_never_arrives_is_answered_503_and_nothing_was_done() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = Server::start_with(&["--request-timeout", "1"]).await;
    let addr = srv.url("").trim_start_matches("http://").to_owned();
    let mut tcp = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/admin/clients HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {ADMIN_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\":"
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tcp.read_to_end(&mut answer),
    )
    .await;
    let answer = String::from_utf8_lossy(&answer);
    assert!(read.is_ok(), "no answer: {answer}");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.contains("did not arrive") && answer.contains("nothing was done"),
        "{answer}"
    );
}
