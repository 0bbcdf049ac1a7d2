//! Paths to routes. One table (`ROUTES`) is the whole surface: the router is
//! built from it and a test holds `openapi.yaml` to it.

use hyper::Method;

/// What a request asks for. The `String` is the path's `{id}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Route {
    Healthz,
    Metrics,
    CreateClient,
    CreateSnapshot,
    ListSnapshots,
    Audit,
    Digest,
    CreateCustomer,
    GetCustomer(String),
    CreateWallet,
    ListWallets,
    GetWallet(String),
    WalletSettings(String),
    WalletStatus(String),
    WalletBalance(String),
    WalletTransactions(String),
    WalletQueue(String),
    Credit(String),
    Debit(String),
    Reserve(String),
    Transfer,
    Convert,
    GetTransaction(String),
    Settle(String),
    Reject(String),
    Capture(String),
    Release(String),
    Cancel(String),
    Batch,
    CreatePayinAddress(String),
    ListPayinAddresses(String),
    GetPayinAddress(String),
    Payin(String),
    CreateWebhook,
    ListWebhooks,
    DeleteWebhook(String),
}

/// Every (method, path) the server answers, in OpenAPI's template syntax.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("POST", "/v1/admin/clients"),
    ("POST", "/v1/admin/snapshots"),
    ("GET", "/v1/admin/snapshots"),
    ("GET", "/v1/admin/audit"),
    ("GET", "/v1/admin/digest"),
    ("POST", "/v1/customers"),
    ("GET", "/v1/customers/{id}"),
    ("POST", "/v1/wallets"),
    ("GET", "/v1/wallets"),
    ("GET", "/v1/wallets/{id}"),
    ("PUT", "/v1/wallets/{id}/settings"),
    ("PUT", "/v1/wallets/{id}/status"),
    ("GET", "/v1/wallets/{id}/balance"),
    ("GET", "/v1/wallets/{id}/transactions"),
    ("GET", "/v1/wallets/{id}/queue"),
    ("POST", "/v1/wallets/{id}/credits"),
    ("POST", "/v1/wallets/{id}/debits"),
    ("POST", "/v1/wallets/{id}/reservations"),
    ("POST", "/v1/transfers"),
    ("POST", "/v1/conversions"),
    ("GET", "/v1/transactions/{id}"),
    ("POST", "/v1/transactions/{id}/settle"),
    ("POST", "/v1/transactions/{id}/reject"),
    ("POST", "/v1/transactions/{id}/capture"),
    ("POST", "/v1/transactions/{id}/release"),
    ("POST", "/v1/transactions/{id}/cancel"),
    ("POST", "/v1/batch"),
    ("POST", "/v1/wallets/{id}/payin-addresses"),
    ("GET", "/v1/wallets/{id}/payin-addresses"),
    ("GET", "/v1/payin-addresses/{id}"),
    ("POST", "/v1/payin-addresses/{id}/payins"),
    ("POST", "/v1/webhooks"),
    ("GET", "/v1/webhooks"),
    ("DELETE", "/v1/webhooks/{id}"),
];

fn route_for(method: &str, path: &str, id: String) -> Option<Route> {
    use Route::*;
    Some(match (method, path) {
        ("GET", "/healthz") => Healthz,
        ("GET", "/metrics") => Metrics,
        ("POST", "/v1/admin/clients") => CreateClient,
        ("POST", "/v1/admin/snapshots") => CreateSnapshot,
        ("GET", "/v1/admin/snapshots") => ListSnapshots,
        ("GET", "/v1/admin/audit") => Audit,
        ("GET", "/v1/admin/digest") => Digest,
        ("POST", "/v1/customers") => CreateCustomer,
        ("GET", "/v1/customers/{id}") => GetCustomer(id),
        ("POST", "/v1/wallets") => CreateWallet,
        ("GET", "/v1/wallets") => ListWallets,
        ("GET", "/v1/wallets/{id}") => GetWallet(id),
        ("PUT", "/v1/wallets/{id}/settings") => WalletSettings(id),
        ("PUT", "/v1/wallets/{id}/status") => WalletStatus(id),
        ("GET", "/v1/wallets/{id}/balance") => WalletBalance(id),
        ("GET", "/v1/wallets/{id}/transactions") => WalletTransactions(id),
        ("GET", "/v1/wallets/{id}/queue") => WalletQueue(id),
        ("POST", "/v1/wallets/{id}/credits") => Credit(id),
        ("POST", "/v1/wallets/{id}/debits") => Debit(id),
        ("POST", "/v1/wallets/{id}/reservations") => Reserve(id),
        ("POST", "/v1/transfers") => Transfer,
        ("POST", "/v1/conversions") => Convert,
        ("GET", "/v1/transactions/{id}") => GetTransaction(id),
        ("POST", "/v1/transactions/{id}/settle") => Settle(id),
        ("POST", "/v1/transactions/{id}/reject") => Reject(id),
        ("POST", "/v1/transactions/{id}/capture") => Capture(id),
        ("POST", "/v1/transactions/{id}/release") => Release(id),
        ("POST", "/v1/transactions/{id}/cancel") => Cancel(id),
        ("POST", "/v1/batch") => Batch,
        ("POST", "/v1/wallets/{id}/payin-addresses") => CreatePayinAddress(id),
        ("GET", "/v1/wallets/{id}/payin-addresses") => ListPayinAddresses(id),
        ("GET", "/v1/payin-addresses/{id}") => GetPayinAddress(id),
        ("POST", "/v1/payin-addresses/{id}/payins") => Payin(id),
        ("POST", "/v1/webhooks") => CreateWebhook,
        ("GET", "/v1/webhooks") => ListWebhooks,
        ("DELETE", "/v1/webhooks/{id}") => DeleteWebhook(id),
        _ => return None,
    })
}

/// The outcome of matching a request line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matched {
    /// The route, and its template (a low-cardinality label for metrics).
    Found(Route, &'static str),
    /// The path exists, with these methods only.
    MethodNotAllowed(Vec<&'static str>),
    NotFound,
}

#[derive(Debug)]
pub struct Router {
    /// Path template to the methods it answers.
    paths: matchit::Router<(&'static str, Vec<&'static str>)>,
}

impl Router {
    pub fn new() -> Result<Self, matchit::InsertError> {
        let mut paths = matchit::Router::new();
        let mut templates: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
        for &(method, path) in ROUTES {
            match templates.iter_mut().find(|(p, _)| *p == path) {
                Some((_, methods)) => methods.push(method),
                None => templates.push((path, vec![method])),
            }
        }
        for (path, methods) in templates {
            paths.insert(path, (path, methods))?;
        }
        Ok(Self { paths })
    }

    pub fn at(&self, method: &Method, path: &str) -> Matched {
        let Ok(m) = self.paths.at(path) else {
            return Matched::NotFound;
        };
        let (template, methods) = m.value;
        let id = m.params.get("id").unwrap_or("").to_owned();
        match methods.iter().find(|&&mm| mm == method.as_str()) {
            Some(&mm) => match route_for(mm, template, id) {
                Some(route) => Matched::Found(route, template),
                None => Matched::NotFound,
            },
            None => Matched::MethodNotAllowed(methods.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_in_the_table_is_served() {
        let r = Router::new().unwrap();
        for &(method, path) in ROUTES {
            let concrete = path.replace("{id}", "wal_X");
            let m = Method::from_bytes(method.as_bytes()).unwrap();
            assert!(
                matches!(r.at(&m, &concrete), Matched::Found(_, t) if t == path),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn unknown_paths_and_methods_are_told_apart() {
        let r = Router::new().unwrap();
        assert_eq!(r.at(&Method::GET, "/v1/nothing"), Matched::NotFound);
        assert_eq!(
            r.at(&Method::DELETE, "/v1/wallets"),
            Matched::MethodNotAllowed(vec!["POST", "GET"])
        );
        assert_eq!(
            r.at(&Method::GET, "/v1/wallets/abc"),
            Matched::Found(Route::GetWallet("abc".into()), "/v1/wallets/{id}")
        );
    }
}
