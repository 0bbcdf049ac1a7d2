//! API keys: generation, hashing, and who a request comes from.
//!
//! Keys are 256 random bits from the OS, shown once and stored only as
//! BLAKE3 hashes. A slow password hash would add nothing: nobody can guess
//! 256 bits, so a fast hash is as safe and costs nothing per request. The
//! admin key is compared in constant time (`blake3::Hash`'s equality).

use crate::directory::{Directory, KeyHash};
use settle_engine::ClientId;
use std::fmt::Write;

/// Who sent a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Client(ClientId),
}

/// The prefix of client keys (admin keys carry their own), so that a key in
/// a log or a paste is recognisable.
pub const CLIENT_KEY_PREFIX: &str = "sk_";

/// A fresh secret: `prefix` then 64 hex digits (256 random bits).
pub fn generate_key(prefix: &str) -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let mut key = String::with_capacity(prefix.len() + 64);
    key.push_str(prefix);
    for b in bytes {
        let _ = write!(key, "{b:02x}");
    }
    Ok(key)
}

pub fn hash_key(key: &str) -> KeyHash {
    *blake3::hash(key.as_bytes()).as_bytes()
}

/// Knows the admin key's hash and finds clients by theirs.
#[derive(Debug)]
pub struct Keys {
    admin: blake3::Hash,
}

impl Keys {
    pub fn new(admin_key: &str) -> Self {
        Self {
            admin: blake3::hash(admin_key.as_bytes()),
        }
    }

    /// Who holds `key`, if anyone.
    pub fn principal(&self, directory: &Directory, key: &str) -> Option<Principal> {
        let hash = blake3::hash(key.as_bytes());
        // Constant-time comparison (blake3::Hash's PartialEq).
        if hash == self.admin {
            return Some(Principal::Admin);
        }
        directory
            .client_by_key(hash.as_bytes())
            .map(Principal::Client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_long_random_and_recognised_only_by_hash() {
        let a = generate_key(CLIENT_KEY_PREFIX).unwrap();
        let b = generate_key(CLIENT_KEY_PREFIX).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 3 + 64);
        let keys = Keys::new("admin-secret");
        let dir = Directory::new();
        assert_eq!(keys.principal(&dir, "admin-secret"), Some(Principal::Admin));
        assert_eq!(keys.principal(&dir, &a), None);
        let client = crate::directory::Client {
            id: ClientId::from_u128(1),
            name: "c".into(),
            created_at: settle_engine::Timestamp::from_millis(0),
        };
        dir.apply(&crate::directory::DirectoryRecord::ClientCreated {
            client,
            key_hash: hash_key(&a),
        });
        assert_eq!(
            keys.principal(&dir, &a),
            Some(Principal::Client(ClientId::from_u128(1)))
        );
        assert_eq!(keys.principal(&dir, &b), None);
    }
}
