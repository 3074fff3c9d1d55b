//! Root credentials: configured, or generated on first start and kept under
//! `metadata_path` with mode 0600.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use bucketdb_api::Credentials;
use bucketdb_store::Random;
use bucketdb_store::env::random_bytes;
use serde::{Deserialize, Serialize};

use crate::{Config, Error};

pub const CREDENTIALS_FILE: &str = "credentials.toml";

#[derive(Serialize, Deserialize)]
struct Stored {
    access_key: String,
    secret_key: String,
}

/// Write a small file readable only by its owner, durably.
pub(crate) fn write_private_file(path: &Path, contents: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    // A leftover temp file may have other permissions: start from a new one.
    match std::fs::remove_file(&tmp) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

const ACCESS_KEY_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
const SECRET_KEY_ALPHABET: &[u8] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

fn random_string(random: &dyn Random, alphabet: &[u8], len: usize) -> String {
    let bytes = random_bytes::<64>(random);
    bytes[..len]
        .iter()
        .map(|b| alphabet[*b as usize % alphabet.len()] as char)
        .collect()
}

/// The root credentials and whether they were generated just now (so the caller shows
/// them once).
pub fn resolve_credentials(
    config: &Config,
    random: &dyn Random,
) -> Result<(Credentials, bool), Error> {
    if let (Some(ak), Some(sk)) = (&config.access_key, &config.secret_key) {
        return Ok((
            Credentials {
                access_key: ak.clone(),
                secret_key: sk.clone(),
            },
            false,
        ));
    }
    let path = config.metadata_path.join(CREDENTIALS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let s: Stored = toml::from_str(&text).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", path.display()),
                )
            })?;
            return Ok((
                Credentials {
                    access_key: s.access_key,
                    secret_key: s.secret_key,
                },
                false,
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::at(&path)(e)),
    }
    std::fs::create_dir_all(&config.metadata_path).map_err(Error::at(&config.metadata_path))?;
    let stored = Stored {
        access_key: format!("BK{}", random_string(random, ACCESS_KEY_ALPHABET, 18)),
        secret_key: random_string(random, SECRET_KEY_ALPHABET, 40),
    };
    let text = toml::to_string(&stored).map_err(|e| std::io::Error::other(e.to_string()))?;
    write_private_file(&path, &text).map_err(Error::at(&path))?;
    Ok((
        Credentials {
            access_key: stored.access_key,
            secret_key: stored.secret_key,
        },
        true,
    ))
}
