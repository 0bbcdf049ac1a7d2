//! Pay-in addresses and pay-ins on the real binary: issued, listed, unique,
//! tenancy-checked, durable across a restart; a pay-in is a pending credit
//! that compliance settles (the balance moves) or rejects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use serde_json::{Value, json};
use std::collections::BTreeSet;
use support::{Server, dec, idem};

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("not a string: {v}"))
        .to_owned()
}

async fn issue(srv: &Server, key: &str, wallet: &str, kind: &str) -> Value {
    srv.post_json(
        &format!("/v1/wallets/{wallet}/payin-addresses"),
        key,
        &json!({ "type": kind }),
    )
    .await
    .ok(201)
}

#[tokio::test]
async fn addresses_are_issued_listed_unique_and_tenancy_checked() {
    let srv = Server::start().await;
    let key = srv.client_key().await;
    let other = srv.client_key().await;
    let usd = srv.create_wallet(&key, "USD").await;
    let gbp = srv.create_wallet(&key, "GBP").await;

    let local = issue(&srv, &key, &usd, "local_bank_transfer").await;
    assert!(s(&local["id"]).starts_with("pia_"), "{local}");
    assert_eq!(local["walletId"], usd.as_str());
    assert_eq!(local["type"], "local_bank_transfer");
    assert_eq!(local["routingCodeType"], "aba");
    assert_eq!(local["status"], "active");
    assert_eq!(s(&local["accountNumber"]).len(), 12);
    assert!(support::is_timestamp(&local["createdAt"]));
    let intl = issue(&srv, &key, &usd, "international_bank_transfer").await;
    assert_eq!(intl["routingCodeType"], "bic");
    assert!(s(&intl["accountNumber"]).starts_with("GB"), "{intl}");
    assert_eq!(
        issue(&srv, &key, &gbp, "local_bank_transfer").await["routingCodeType"],
        "sort_code"
    );

    // Unique across the engine: many addresses, many wallets, two clients.
    let mut numbers = BTreeSet::new();
    let mut ids = BTreeSet::new();
    for a in [&local, &intl] {
        numbers.insert(s(&a["accountNumber"]));
        ids.insert(s(&a["id"]));
    }
    let theirs = srv.create_wallet(&other, "USD").await;
    for i in 0..40 {
        let (k, w) = if i % 2 == 0 {
            (&key, &gbp)
        } else {
            (&other, &theirs)
        };
        let a = issue(&srv, k, w, "local_bank_transfer").await;
        assert!(
            numbers.insert(s(&a["accountNumber"])),
            "a number issued twice: {a}"
        );
        assert!(ids.insert(s(&a["id"])));
    }

    // Listed per wallet, oldest first.
    let list = srv
        .get(&format!("/v1/wallets/{usd}/payin-addresses"), &key)
        .await;
    let data = list.ok(200);
    let listed: Vec<String> = data
        .as_array()
        .unwrap()
        .iter()
        .map(|a| s(&a["id"]))
        .collect();
    assert_eq!(listed, vec![s(&local["id"]), s(&intl["id"])]);
    assert_eq!(list.json["meta"]["count"], 2);
    let got = srv
        .get(&format!("/v1/payin-addresses/{}", s(&local["id"])), &key)
        .await
        .ok(200);
    assert_eq!(got, local);

    // Another client's wallet or address answers as an absent one.
    for path in [
        format!("/v1/wallets/{usd}/payin-addresses"),
        format!("/v1/payin-addresses/{}", s(&local["id"])),
    ] {
        srv.get(&path, &other).await.err(404, "not_found");
    }
    srv.post_json(
        &format!("/v1/wallets/{usd}/payin-addresses"),
        &other,
        &json!({ "type": "local_bank_transfer" }),
    )
    .await
    .err(404, "not_found");
    srv.post_json(
        &format!("/v1/payin-addresses/{}/payins", s(&local["id"])),
        &other,
        &json!({ "amount": "1.00" }),
    )
    .await
    .err(404, "not_found");

    // A suspended or closed wallet's addresses say so, and take no pay-ins.
    let gbp_address = s(&issue(&srv, &key, &gbp, "local_bank_transfer").await["id"]);
    let one = format!("/v1/payin-addresses/{gbp_address}");
    for (status, code) in [("suspended", Some("wallet_suspended")), ("active", None)] {
        srv.put_json(
            &format!("/v1/wallets/{gbp}/status"),
            &key,
            &json!({ "status": status }),
        )
        .await
        .ok(200);
        assert_eq!(srv.get(&one, &key).await.ok(200)["status"], status);
        if let Some(code) = code {
            srv.post_json(&format!("{one}/payins"), &key, &json!({ "amount": "1.00" }))
                .await
                .err(409, code);
        }
    }
    srv.put_json(
        &format!("/v1/wallets/{gbp}/status"),
        &key,
        &json!({"status": "closed"}),
    )
    .await
    .ok(200);
    let closed = srv
        .get(&format!("/v1/wallets/{gbp}/payin-addresses"), &key)
        .await
        .ok(200);
    assert!(
        closed
            .as_array()
            .is_some_and(|l| !l.is_empty() && l.iter().all(|a| a["status"] == "closed")),
        "{closed}"
    );
    assert_eq!(srv.get(&one, &key).await.ok(200)["status"], "closed");
    srv.post_json(&format!("{one}/payins"), &key, &json!({ "amount": "1.00" }))
        .await
        .err(409, "wallet_closed");
    assert_eq!(srv.get(&one, &key).await.ok(200)["status"], "closed");
    assert_eq!(
        srv.get(&format!("/v1/payin-addresses/{}", s(&local["id"])), &key)
            .await
            .ok(200)["status"],
        "active"
    );

    // Bad input: the API's codes, never a 500.
    for body in [
        json!({ "type": "carrier_pigeon" }),
        json!({}),
        json!({ "type": "local_bank_transfer", "extra": 1 }),
        json!({ "type": "local_bank_transfer", "asset": "EUR" }),
    ] {
        srv.post_json(&format!("/v1/wallets/{usd}/payin-addresses"), &key, &body)
            .await
            .err(400, "invalid_request");
    }
    srv.post_json(
        &format!("/v1/wallets/{usd}/payin-addresses"),
        &key,
        &json!({ "type": "local_bank_transfer", "asset": "XXXX1" }),
    )
    .await
    .err(400, "unknown_asset");
    srv.post_json(
        "/v1/payin-addresses/pia_01ARZ3NDEKTSV4RRFFQ69G5FAV/payins",
        &key,
        &json!({ "amount": "1.00" }),
    )
    .await
    .err(404, "not_found");
    srv.post_json(
        "/v1/payin-addresses/nonsense/payins",
        &key,
        &json!({ "amount": "1.00" }),
    )
    .await
    .err(404, "not_found");
    for amount in ["0", "-1.00", "1.001", "abc"] {
        srv.post_json(
            &format!("/v1/payin-addresses/{}/payins", s(&local["id"])),
            &key,
            &json!({ "amount": amount }),
        )
        .await
        .err(400, "invalid_amount");
    }
}

#[tokio::test]
async fn payins_are_pending_credits_that_settle_or_reject_and_everything_survives_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let mut srv = Server::start_in(data.path()).await;
    let key = srv.client_key().await;
    let wallet = srv.create_wallet(&key, "USD").await;
    let address = issue(&srv, &key, &wallet, "local_bank_transfer").await;
    let pia = s(&address["id"]);
    let payins = format!("/v1/payin-addresses/{pia}/payins");

    // A pay-in: pending, not in cash; idempotent as money movement is.
    let body = json!({
        "amount": "250.00",
        "remitter": { "name": "Ada Lovelace", "accountNumber": "12345678" },
        "source": "faster_payments"
    })
    .to_string();
    let k = idem();
    let first = srv.post(&payins, &key, &k, &body).await;
    let t = first.ok(201);
    assert_eq!(
        (t["type"].as_str(), t["status"].as_str()),
        (Some("credit"), Some("pending"))
    );
    assert_eq!(t["walletId"], wallet.as_str());
    assert_eq!(t["amount"], "250.00");
    assert_eq!(t["metadata"]["payinAddressId"], pia.as_str());
    assert_eq!(t["metadata"]["remitter"]["name"], "Ada Lovelace");
    assert_eq!(t["metadata"]["source"], "faster_payments");
    let again = srv.post(&payins, &key, &k, &body).await;
    assert!(again.replayed());
    assert_eq!(again.json, first.json);
    let b = srv.balance(&key, &wallet, "USD").await;
    assert_eq!(
        (dec(&b["cash"]), dec(&b["pending"])),
        (0.into(), 250.into()),
        "{b}"
    );

    // Compliance settles it: the balance moves.
    let settled = srv
        .post_empty(&format!("/v1/transactions/{}/settle", s(&t["id"])), &key)
        .await
        .ok(200);
    assert_eq!(settled["status"], "settled");
    let b = srv.balance(&key, &wallet, "USD").await;
    assert_eq!(
        (dec(&b["cash"]), dec(&b["pending"])),
        (250.into(), 0.into()),
        "{b}"
    );

    // Another is rejected: gone, nothing moved.
    let t2 = srv
        .post_json(&payins, &key, &json!({ "amount": 40 }))
        .await
        .ok(201);
    let rejected = srv
        .post_empty(&format!("/v1/transactions/{}/reject", s(&t2["id"])), &key)
        .await
        .ok(200);
    assert_eq!(rejected["status"], "rejected");
    let b = srv.balance(&key, &wallet, "USD").await;
    assert_eq!(
        (dec(&b["cash"]), dec(&b["pending"])),
        (250.into(), 0.into()),
        "{b}"
    );

    // A crash: addresses and pay-ins are there after recovery.
    srv.kill9();
    let srv = Server::start_in(data.path()).await;
    let list = srv
        .get(&format!("/v1/wallets/{wallet}/payin-addresses"), &key)
        .await
        .ok(200);
    assert_eq!(list[0], address);
    let again = srv.post(&payins, &key, &k, &body).await;
    assert!(
        again.replayed(),
        "a retry after the crash gets the first answer"
    );
    assert_eq!(again.json, first.json);
    let b = srv.balance(&key, &wallet, "USD").await;
    assert_eq!(dec(&b["cash"]), 250.into(), "{b}");
    let t3 = srv
        .post_json(&payins, &key, &json!({ "amount": "1.00" }))
        .await
        .ok(201);
    assert_eq!(t3["status"], "pending");
}
