//! Saved HMAC credentials: `~/.config/lmts/credentials.toml`, one table per profile, written
//! 0600 and refused when others can read it.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use lmts_core::{
    error_chain::error_chain,
    files::{self, FileError},
};
use lmts_sdk::HmacCredentials;
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::exit::{CommandError, ConfigError};

/// The profile used when none is named.
pub const DEFAULT_PROFILE: &str = "default";

/// The credentials file's default place: `$XDG_CONFIG_HOME/lmts/credentials.toml`, else
/// `~/.config/lmts/credentials.toml`.
pub fn default_path() -> PathBuf {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|dir| !dir.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))
        .unwrap_or_else(|| PathBuf::from("."));
    config.join("lmts").join("credentials.toml")
}

/// One saved credential.
#[derive(Clone, Serialize, Deserialize)]
pub struct SavedProfile {
    /// The service it belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The token id.
    pub token_id: String,
    /// The secret, standard base64.
    pub secret: String,
}

impl Drop for SavedProfile {
    fn drop(&mut self) {
        self.secret.zeroize();
    }
}

impl fmt::Debug for SavedProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SavedProfile")
            .field("base_url", &self.base_url)
            .field("token_id", &self.token_id)
            .field("secret", &"[redacted]")
            .finish()
    }
}

impl SavedProfile {
    /// The credentials, checked.
    pub fn credentials(&self, name: &str) -> Result<HmacCredentials, CommandError> {
        HmacCredentials::new(self.token_id.clone(), &self.secret)
            .map_err(|error| ConfigError(format!("profile {name:?}: {error}")).into())
    }
}

/// The whole file.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CredentialsFile {
    /// Profiles by name.
    #[serde(default)]
    pub profiles: BTreeMap<String, SavedProfile>,
}

fn file_error(path: &Path, error: FileError) -> CommandError {
    ConfigError(format!(
        "credentials file {}: {}",
        path.display(),
        error_chain(&error)
    ))
    .into()
}

impl CredentialsFile {
    /// Reads the file; a missing file is an empty one.
    pub fn load(path: &Path) -> Result<Self, CommandError> {
        match files::read_private(path).map_err(|error| file_error(path, error))? {
            None => Ok(Self::default()),
            Some(text) => toml::from_str(&text).map_err(|error| {
                ConfigError(format!(
                    "credentials file {} is not valid: {error}",
                    path.display()
                ))
                .into()
            }),
        }
    }

    /// Writes the file atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), CommandError> {
        let text = Zeroizing::new(
            toml::to_string(self)
                .map_err(|error| ConfigError(format!("credentials file: {error}")))?,
        );
        files::replace_private(path, text.as_bytes()).map_err(|error| file_error(path, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_round_trip_and_debug_hides_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lmts/credentials.toml");
        let mut file = CredentialsFile::load(&path).unwrap();
        assert!(file.profiles.is_empty());
        file.profiles.insert(
            "bot".into(),
            SavedProfile {
                base_url: Some("http://127.0.0.1:8080".into()),
                token_id: "lmts_x".into(),
                secret: "c3VwZXItc2VjcmV0LWtleQ==".into(),
            },
        );
        file.save(&path).unwrap();
        let loaded = CredentialsFile::load(&path).unwrap();
        let bot = &loaded.profiles["bot"];
        assert_eq!(bot.token_id, "lmts_x");
        assert_eq!(
            bot.credentials("bot").unwrap().secret.expose_secret(),
            b"super-secret-key"
        );
        assert!(!format!("{loaded:?}").contains("c3VwZXI"));
    }
}

/// Credentials chosen for a signing command, and the service they belong to if known.
#[derive(Debug)]
pub struct Resolved {
    /// The credentials.
    pub credentials: HmacCredentials,
    /// The base URL saved with them.
    pub base_url: Option<String>,
}

/// Picks credentials: the named profile; else `LIMITLESS_API_TOKEN_ID` and
/// `LIMITLESS_API_TOKEN_SECRET`; else the profile `default`.
pub fn resolve(profile: Option<&str>, path: &Path) -> Result<Resolved, CommandError> {
    let from_file = |name: &str, required: bool| -> Result<Option<Resolved>, CommandError> {
        let file = CredentialsFile::load(path)?;
        match file.profiles.get(name) {
            Some(saved) => Ok(Some(Resolved {
                credentials: saved.credentials(name)?,
                base_url: saved.base_url.clone(),
            })),
            None if required => Err(ConfigError(format!(
                "no profile {name:?} in {}; derive one with `lmts tokens derive --save {name}`",
                path.display()
            ))
            .into()),
            None => Ok(None),
        }
    };
    if let Some(name) = profile {
        if let Some(resolved) = from_file(name, true)? {
            return Ok(resolved);
        }
    }
    let var = |name: &str| std::env::var(name).ok().filter(|value| !value.is_empty());
    match (var(lmts_sdk::ENV_TOKEN_ID), var(lmts_sdk::ENV_TOKEN_SECRET)) {
        (Some(id), Some(secret)) => {
            let credentials = HmacCredentials::new(id, &secret)
                .map_err(|error| ConfigError(format!("{}: {error}", lmts_sdk::ENV_TOKEN_SECRET)))?;
            return Ok(Resolved {
                credentials,
                base_url: None,
            });
        }
        (None, None) => {}
        _ => {
            return Err(ConfigError(format!(
                "set both {} and {}, or neither",
                lmts_sdk::ENV_TOKEN_ID,
                lmts_sdk::ENV_TOKEN_SECRET
            ))
            .into())
        }
    }
    from_file(DEFAULT_PROFILE, false)?.ok_or_else(|| {
        ConfigError(format!(
            "no credentials: pass --profile, set {} and {}, or save some with `lmts tokens derive --save`",
            lmts_sdk::ENV_TOKEN_ID,
            lmts_sdk::ENV_TOKEN_SECRET
        ))
        .into()
    })
}
