//! Saved HMAC credentials: `~/.config/lmts/credentials.toml`, one table per profile, written
//! 0600 and refused when others can read it.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use chrono::{DateTime, TimeDelta, Utc};
use lmts_core::{
    error_chain::error_chain,
    files::{self, FileError},
    signing::format_timestamp,
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
    /// When the token expires, if it does (SPEC C2).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "lmts_core::wire::rfc3339_millis::option"
    )]
    pub expires_at: Option<DateTime<Utc>>,
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
            .field("expires_at", &self.expires_at)
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

/// Credentials chosen for a signing command, and the service they belong to if known.
#[derive(Debug)]
pub struct Resolved {
    /// The credentials.
    pub credentials: HmacCredentials,
    /// The base URL saved with them.
    pub base_url: Option<String>,
    /// The profile they were saved under and their expiry, when they came from the file.
    pub saved_as: Option<(String, Option<DateTime<Utc>>)>,
}

/// How close to their expiry saved credentials warn on use.
pub const EXPIRY_WARNING: TimeDelta = TimeDelta::days(7);

impl Resolved {
    /// A warning for credentials that expire within [`EXPIRY_WARNING`] of `now`, or expired.
    pub fn expiry_warning(&self, now: DateTime<Utc>) -> Option<String> {
        let (name, Some(expires_at)) = self.saved_as.as_ref()? else {
            return None;
        };
        let at = format_timestamp(*expires_at);
        if *expires_at <= now {
            Some(format!(
                "the credentials of profile {name:?} expired at {at}; derive new ones"
            ))
        } else if *expires_at - now < EXPIRY_WARNING {
            let hours = (*expires_at - now).num_hours();
            Some(format!(
                "the credentials of profile {name:?} expire at {at} (in {} days {} hours); derive new ones before then",
                hours / 24,
                hours % 24
            ))
        } else {
            None
        }
    }
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
                saved_as: Some((name.to_owned(), saved.expires_at)),
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
                saved_as: None,
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
                expires_at: None,
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

    /// The message and exit code a command would end with.
    fn refusal(error: CommandError) -> (String, u8) {
        (crate::exit::message(&*error), crate::exit::code(&*error))
    }

    fn write_file(path: &Path, text: &str, mode: u32) {
        std::fs::write(path, text).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        #[cfg(not(unix))]
        let _ = mode;
    }

    #[test]
    fn a_saved_file_is_private_and_a_second_save_replaces_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config/lmts/credentials.toml");
        let mut file = CredentialsFile::default();
        file.profiles.insert(
            DEFAULT_PROFILE.into(),
            SavedProfile {
                base_url: None,
                token_id: "lmts_one".into(),
                secret: "c2VjcmV0".into(),
                expires_at: None,
            },
        );
        file.save(&path).unwrap();
        file.profiles.get_mut(DEFAULT_PROFILE).unwrap().token_id = "lmts_two".into();
        file.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(path.parent().unwrap()), 0o700);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("lmts_two") && !text.contains("lmts_one"),
            "{text}"
        );
        assert!(
            !text.contains("base_url"),
            "no empty base URL written: {text}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_file_others_may_read_is_refused_with_exit_code_3() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        write_file(
            &path,
            "[profiles.default]\ntoken_id = \"lmts_x\"\nsecret = \"c2VjcmV0\"\n",
            0o640,
        );
        let (message, code) = refusal(CredentialsFile::load(&path).unwrap_err());
        assert_eq!(code, 3);
        assert!(
            message.contains("mode 640") && message.contains("chmod 600"),
            "{message}"
        );
    }

    #[test]
    fn a_broken_file_or_secret_is_a_configuration_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        write_file(&path, "[profiles.default\n", 0o600);
        let (message, code) = refusal(CredentialsFile::load(&path).unwrap_err());
        assert_eq!(code, 3);
        assert!(message.contains("is not valid"), "{message}");

        write_file(
            &path,
            "[profiles.bot]\ntoken_id = \"lmts_x\"\nsecret = \"not base64!\"\n",
            0o600,
        );
        let (message, code) = refusal(resolve(Some("bot"), &path).unwrap_err());
        assert_eq!(code, 3);
        assert!(message.starts_with("profile \"bot\": "), "{message}");
    }

    #[test]
    fn a_named_profile_comes_with_its_service_or_a_hint_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        write_file(
            &path,
            "[profiles.bot]\nbase_url = \"http://127.0.0.1:8080\"\ntoken_id = \"lmts_x\"\nsecret = \"c2VjcmV0\"\n",
            0o600,
        );
        let resolved = resolve(Some("bot"), &path).unwrap();
        assert_eq!(resolved.credentials.token_id.to_string(), "lmts_x");
        assert_eq!(resolved.base_url.as_deref(), Some("http://127.0.0.1:8080"));
        assert!(!format!("{resolved:?}").contains("c2VjcmV0"));

        let (message, code) = refusal(resolve(Some("nope"), &path).unwrap_err());
        assert_eq!(code, 3);
        assert!(
            message.contains("no profile \"nope\"")
                && message.contains("lmts tokens derive --save nope"),
            "{message}"
        );
    }

    #[test]
    fn saved_credentials_warn_in_their_last_week_and_after() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials.toml");
        let now = lmts_core::signing::parse_timestamp("2027-01-01T00:00:00.000Z").unwrap();
        let warning = |expires_at: Option<DateTime<Utc>>| {
            let mut file = CredentialsFile::default();
            file.profiles.insert(
                "bot".into(),
                SavedProfile {
                    base_url: None,
                    token_id: "lmts_one".into(),
                    secret: "c2VjcmV0".into(),
                    expires_at,
                },
            );
            file.save(&path).unwrap();
            resolve(Some("bot"), &path).unwrap().expiry_warning(now)
        };
        assert_eq!(warning(None), None);
        assert_eq!(warning(Some(now + TimeDelta::days(7))), None);
        let soon = warning(Some(now + TimeDelta::hours(75))).unwrap();
        assert!(
            soon.contains("profile \"bot\" expire at 2027-01-04T03:00:00.000Z (in 3 days 3 hours)"),
            "{soon}"
        );
        let past = warning(Some(now)).unwrap();
        assert!(
            past.contains("expired at 2027-01-01T00:00:00.000Z"),
            "{past}"
        );
    }
}
