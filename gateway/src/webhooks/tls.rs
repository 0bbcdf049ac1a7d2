//! TLS for deliveries to `https://` receivers: rustls with the `ring`
//! provider, the Mozilla roots compiled in (`webpki-roots`), plus the
//! operator's own roots (`settle serve --webhook-ca FILE`: a private CA, or
//! the test CA of the TLS tests). Certificates are always verified; there
//! is no switch to turn that off.
//!
//! Why `webpki-roots` and not the OS store (`rustls-native-certs`): the same
//! trust on every host, container and CI run, with nothing to install (a
//! slim image has no CA bundle at all); a private CA is one flag away. The
//! cost: the public set is as new as this build's crate, not the host's.

pub use rustls::ClientConfig;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::error::Error;
use std::path::Path;
use std::sync::Arc;

/// The roots in a PEM file (every `CERTIFICATE` section; other sections,
/// such as a key, are passed over). A file without one is an error: an
/// operator who names a file means it to add something.
pub fn read_roots(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut roots = Vec::new();
    for cert in CertificateDer::pem_slice_iter(&text) {
        roots.push(cert.map_err(|e| format!("{}: not valid PEM: {e}", path.display()))?);
    }
    if roots.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected PEM `-----BEGIN CERTIFICATE-----` sections)",
            path.display()
        ));
    }
    Ok(roots)
}

/// The delivery client's TLS settings: the public roots and `extra`. An
/// `extra` root that is not a usable CA certificate is an error (found at
/// start, not at the first delivery).
pub fn client_config(extra: &[CertificateDer<'static>]) -> Result<ClientConfig, String> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for (n, cert) in extra.iter().enumerate() {
        roots
            .add(cert.clone())
            .map_err(|e| format!("extra root certificate #{}: {e}", n + 1))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS set-up: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A failed request, said fully: every layer of the error chain (hyper's
/// own text, "client error (Connect)", says nothing of the cause), and a
/// refused certificate named as such.
pub fn describe(error: &(dyn Error + 'static)) -> String {
    if let Some(tls) = find_tls_error(error) {
        return match tls {
            rustls::Error::InvalidCertificate(_) => format!(
                "TLS certificate error: {tls} (the receiver's certificate is not trusted \
                 by this server: not from a known CA, expired, or not for this host)"
            ),
            _ => format!("TLS error: {tls}"),
        };
    }
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let part = e.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = e.source();
    }
    text
}

/// The rustls error behind `error`, if any: through `source()` links and
/// through `io::Error`s that wrap one (as tokio-rustls and hyper-rustls do).
fn find_tls_error<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
            && let Some(tls) = find_tls_error(inner)
        {
            return Some(tls);
        }
        next = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn ca_pem() -> String {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn roots_are_read_from_pem_and_checked() {
        let two = format!("{}\n{}", ca_pem(), ca_pem());
        let f = file(&two);
        let roots = read_roots(f.path()).unwrap();
        assert_eq!(roots.len(), 2);
        assert!(client_config(&roots).is_ok());
        assert!(client_config(&[]).is_ok(), "public roots only");

        let missing = read_roots(Path::new("/nonexistent/ca.pem")).unwrap_err();
        assert!(
            missing.contains("cannot read /nonexistent/ca.pem"),
            "{missing}"
        );
        let empty = read_roots(file("just text\n").path()).unwrap_err();
        assert!(empty.contains("no certificate"), "{empty}");
        let broken = file("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
        assert!(read_roots(broken.path()).is_err());
        // PEM that decodes but is no certificate: refused at start.
        let junk = file("-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n");
        let junk = read_roots(junk.path()).unwrap();
        let e = client_config(&junk).unwrap_err();
        assert!(e.contains("extra root certificate #1"), "{e}");
    }

    #[test]
    fn errors_are_described_through_their_chain() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // As hyper-rustls hands it over: an io::Error around tokio-rustls's.
        let wrapped =
            std::io::Error::other(std::io::Error::new(std::io::ErrorKind::InvalidData, tls));
        let text = describe(&wrapped);
        assert!(text.starts_with("TLS certificate error: "), "{text}");
        assert!(text.contains("UnknownIssuer"), "{text}");

        #[derive(Debug)]
        struct Outer(std::io::Error);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl Error for Outer {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let refused = Outer(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(
            describe(&refused),
            "client error (Connect): connection refused"
        );
    }
}
