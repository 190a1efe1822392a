//! Pseudonymization (docs/contract.md §6): with `privacy.pseudonymize`, every employee id an
//! output names is replaced by a keyed HMAC of it. Only who holds the key
//! (`MOMENTD_PSEUDONYM_KEY`) can link a pseudonym back to a person, by computing it again.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Replaces employee ids in outputs by `HMAC-SHA256(key, id)`, first 32 hex digits.
#[derive(Clone)]
pub struct Pseudonymizer {
    mac: Hmac<Sha256>,
}

impl Pseudonymizer {
    pub fn new(key: &[u8]) -> Pseudonymizer {
        Pseudonymizer {
            // HMAC takes keys of any length.
            mac: Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts any key length"),
        }
    }

    /// A 192-byte secret for keyed fingerprints of employee ids (xxh3 with a custom secret):
    /// with pseudonymization on, the fingerprints in state and in internal topics cannot be
    /// matched against a roster without the key.
    pub fn fingerprint_secret(&self) -> Box<[u8; 192]> {
        let mut out = Box::new([0u8; 192]);
        for (i, chunk) in out.chunks_mut(32).enumerate() {
            let mut m = self.mac.clone();
            m.update(b"momentd fingerprint secret ");
            m.update(&[i as u8]);
            chunk.copy_from_slice(&m.finalize().into_bytes());
        }
        out
    }

    pub fn pseudonym(&self, id: &str) -> String {
        let mut m = self.mac.clone();
        m.update(id.as_bytes());
        let out = m.finalize().into_bytes();
        hex::encode(&out[..16])
    }
}

impl std::fmt::Debug for Pseudonymizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymizer(..)")
    }
}
