//! Private files (the feature `files`): created with mode 0600 (directories 0700), and refused
//! when others may read them. The server keeps its master key and dev issuer key this way, the
//! command line its saved credentials.
//!
//! This is the one module of `lmts-core` that does IO, so it is opt-in: the SDK leaves it off.
//!
//! ```
//! use lmts_core::files::{read_private, replace_private};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("config/credentials.toml");
//! replace_private(&path, b"[profiles]")?; // the directory 0700, the file 0600
//! assert_eq!(read_private(&path)?.as_deref().map(String::as_str), Some("[profiles]"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read},
    path::Path,
};

use zeroize::Zeroizing;

/// Why a private file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileError {
    /// The file or directory could not be read or written.
    #[error("cannot access it")]
    Io(#[from] io::Error),
    /// Group or others may access the file; its mode must be 0600.
    #[error("its mode {mode:o} lets others read it; run chmod 600 on it")]
    TooOpen {
        /// The file's permission bits.
        mode: u32,
    },
    /// Group or others may write into the directory: anyone could replace what it holds.
    #[error("its mode {mode:o} lets others write into it; run chmod go-w on it")]
    WritableByOthers {
        /// The directory's permission bits.
        mode: u32,
    },
}

/// Creates `dir` (and its parents) if missing, mode 0700 for what it creates; refuses a
/// directory that group or others may write into.
pub fn ensure_private_dir(dir: &Path) -> Result<(), FileError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(FileError::WritableByOthers { mode });
        }
    }
    Ok(())
}

/// Reads a private file as text; `None` when it does not exist.
pub fn read_private(path: &Path) -> Result<Option<Zeroizing<String>>, FileError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.into()),
    };
    check_private(&file)?;
    let mut text = Zeroizing::new(String::new());
    file.read_to_string(&mut text)?;
    Ok(Some(text))
}

/// Creates a new private file (mode 0600, never overwriting) and fills it with `write`.
pub fn create_private(
    path: &Path,
    write: impl FnOnce(&mut File) -> io::Result<()>,
) -> Result<(), FileError> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    write(&mut file)?;
    file.sync_all()?;
    Ok(())
}

/// Writes `contents` to `path` atomically (a private temporary file renamed over it), creating
/// the parent directory (0700) if needed.
pub fn replace_private(path: &Path, contents: &[u8]) -> Result<(), FileError> {
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    ensure_private_dir(parent)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&temporary);
    create_private(&temporary, |file| std::io::Write::write_all(file, contents))?;
    fs::rename(&temporary, path)?;
    Ok(())
}

#[cfg(unix)]
fn check_private(file: &File) -> Result<(), FileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file.metadata()?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(FileError::TooOpen { mode });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_file: &File) -> Result<(), FileError> {
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use std::{io::Write, os::unix::fs::PermissionsExt};

    use super::*;

    #[test]
    fn created_files_are_0600_and_world_readable_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        create_private(&path, |f| f.write_all(b"k")).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(read_private(&path).unwrap().unwrap().as_str(), "k");
        assert!(
            create_private(&path, |f| f.write_all(b"x")).is_err(),
            "never overwrites"
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            read_private(&path),
            Err(FileError::TooOpen { mode: 0o644 })
        ));
        assert!(read_private(&dir.path().join("missing")).unwrap().is_none());

        let open = dir.path().join("open");
        ensure_private_dir(&open).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(
            ensure_private_dir(&open),
            Err(FileError::WritableByOthers { mode: 0o777 })
        ));
        fs::set_permissions(&open, fs::Permissions::from_mode(0o750)).unwrap();
        assert!(
            ensure_private_dir(&open).is_ok(),
            "readable by the group is allowed"
        );

        let nested = dir.path().join("a/b/creds.toml");
        replace_private(&nested, b"one").unwrap();
        replace_private(&nested, b"two").unwrap();
        assert_eq!(read_private(&nested).unwrap().unwrap().as_str(), "two");
        assert_eq!(
            fs::metadata(&nested).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::read_dir(nested.parent().unwrap()).unwrap().count(),
            1,
            "no temporary left"
        );
    }
}
