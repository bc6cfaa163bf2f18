//! The rules of single fields that need neither an engine nor a catalog: slug, env keys,
//! mount paths, loopback choice and subnet pool. Each error names its field.

use std::net::Ipv4Addr;
use std::path::{Component, Path};

use ipnet::Ipv4Net;

use super::{LoopbackChoice, ValidationError, MAX_SLUG_LEN};

/// Checks a slug: 1-40 of `a-z`, `0-9`, `-`, starting and ending with a letter or digit.
pub fn validate_slug(slug: &str) -> Result<(), ValidationError> {
    let bad = |reason| {
        Err(ValidationError::SlugCharset {
            slug: slug.escape_debug().to_string(),
            reason,
        })
    };
    if slug.is_empty() {
        return Err(ValidationError::SlugEmpty);
    }
    if slug.chars().count() > MAX_SLUG_LEN {
        return Err(ValidationError::SlugTooLong {
            len: slug.chars().count(),
        });
    }
    if slug.bytes().any(|b| b.is_ascii_uppercase()) {
        return bad("has uppercase letters");
    }
    if !slug
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return bad("has a character other than a-z, 0-9 and -");
    }
    if slug.starts_with('-') || slug.ends_with('-') {
        return bad("starts or ends with -");
    }
    Ok(())
}

/// Whether `key` is a portable environment variable name.
pub fn is_valid_env_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && key.len() <= 255
}

pub(super) fn validate_env_key(key: &str) -> Result<(), ValidationError> {
    if is_valid_env_key(key) {
        Ok(())
    } else {
        Err(ValidationError::EnvKey {
            key: key.escape_debug().to_string(),
        })
    }
}

/// Checks a host path: absolute, without `..`, and present on this host.
pub(super) fn validate_host_path(path: &Path) -> Result<(), ValidationError> {
    let bad = |reason| {
        Err(ValidationError::MountHostPath {
            path: path.to_path_buf(),
            reason,
        })
    };
    if !path.is_absolute() {
        return bad("is relative (use an absolute path)");
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return bad("contains .. (use the resolved path)");
    }
    if path.as_os_str().as_encoded_bytes().contains(&b',') {
        return bad("contains a comma, which engines' mount syntax cannot carry");
    }
    if !path.exists() {
        return bad("does not exist on this host");
    }
    Ok(())
}

pub(super) fn validate_container_path(path: &Path) -> Result<(), ValidationError> {
    let bad = |reason| {
        Err(ValidationError::MountContainerPath {
            path: path.to_path_buf(),
            reason,
        })
    };
    if !path.is_absolute() {
        return bad("is relative (use an absolute path)");
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return bad("contains ..");
    }
    if path == Path::new("/") {
        return bad("is the root directory");
    }
    if path.as_os_str().as_encoded_bytes().contains(&b',')
        || path.as_os_str().as_encoded_bytes().contains(&b':')
    {
        return bad("contains a comma or colon, which engines' mount syntax cannot carry");
    }
    Ok(())
}

/// Checks a loopback choice: addresses and pools inside 127.0.0.0/8.
pub fn validate_loopback(choice: &LoopbackChoice) -> Result<(), ValidationError> {
    let loopback_net = Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 8).expect("valid prefix");
    match choice {
        LoopbackChoice::Fixed(addr) => {
            if !addr.is_loopback() {
                return Err(ValidationError::LoopbackNotLoopback {
                    address: addr.to_string(),
                });
            }
        }
        LoopbackChoice::Pool(pool) => {
            if !loopback_net.contains(pool) {
                return Err(ValidationError::LoopbackPool {
                    pool: pool.to_string(),
                    reason: "is not inside 127.0.0.0/8",
                });
            }
            if pool.prefix_len() > 30 {
                return Err(ValidationError::LoopbackPool {
                    pool: pool.to_string(),
                    reason: "is too small (use /30 or larger)",
                });
            }
        }
    }
    Ok(())
}

/// Checks a subnet pool: private (RFC 1918), /24 or larger, and its network address.
pub fn validate_subnet_pool(pool: &Ipv4Net) -> Result<(), ValidationError> {
    let bad = |reason| {
        Err(ValidationError::SubnetPool {
            pool: pool.to_string(),
            reason,
        })
    };
    if pool.prefix_len() > 24 {
        return bad("is smaller than a /24 (each bottle takes a /24)");
    }
    if pool.addr() != pool.network() {
        return bad("is not a network address (host bits are set)");
    }
    if !pool.network().is_private() || !pool.broadcast().is_private() {
        return bad("is not inside a private range (10/8, 172.16/12, 192.168/16)");
    }
    Ok(())
}
