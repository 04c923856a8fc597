//! `lmts backup` and `lmts restore`: the embedded database copied out and back in
//! (`lmts_server::backup`); for PostgreSQL, the commands of its own tools.

use lmts_server::backup;

use crate::{
    cli::{BackupArgs, RestoreArgs},
    exit::CommandError,
    output::Output,
};

/// The warning every backup and restore repeats: the key is not in it.
const KEY_APART: &str = "the master key is not in the backup: keep master.key (or your --master-key-file) apart from it; the restored service needs that key to open any token";

/// `lmts backup --to FILE`.
pub async fn backup(args: BackupArgs, output: &Output) -> Result<(), CommandError> {
    if let Some(url) = &args.store.database_url {
        println!(
            "pg_dump --format=custom --exclude-table-data=used_signatures --file {} {}",
            shell_word(&args.to.to_string_lossy()),
            shell_word(&without_password(url))
        );
        output.note(
            "run the command above where pg_dump reaches the database (password: PGPASSWORD or ~/.pgpass)",
        );
    } else {
        backup::backup(&args.store.data_dir.data_dir, &args.to).await?;
        output.note(&format!("backed up to {} (0600)", args.to.display()));
    }
    output.warn(KEY_APART);
    Ok(())
}

/// `lmts restore --from FILE`.
pub async fn restore(args: RestoreArgs, output: &Output) -> Result<(), CommandError> {
    if let Some(url) = &args.store.database_url {
        println!(
            "pg_restore --clean --if-exists --no-owner --dbname {} {}",
            shell_word(&without_password(url)),
            shell_word(&args.from.to_string_lossy())
        );
        output
            .note("run the command above where pg_restore reaches the database, instances stopped");
    } else {
        let data_dir = &args.store.data_dir.data_dir;
        backup::restore(&args.from, data_dir).await?;
        output.note(&format!("restored into {}", data_dir.display()));
    }
    output.warn(KEY_APART);
    Ok(())
}

/// `url` without its password, so that none is printed: pg_dump and pg_restore read it from
/// `PGPASSWORD` or `~/.pgpass`.
fn without_password(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => "<the --database-url, its password left out>".to_owned(),
    }
}

/// `word` quoted for a POSIX shell when it needs to be.
fn shell_word(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@%+,".contains(&b))
    {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printed_commands_carry_no_password_and_quote_what_needs_it() {
        assert_eq!(
            without_password("postgres://lmts:s3cret@db:5432/lmts"),
            "postgres://lmts@db:5432/lmts"
        );
        assert_eq!(shell_word("/backups/lmts.db"), "/backups/lmts.db");
        assert_eq!(shell_word("my backup's.db"), r"'my backup'\''s.db'");
    }
}
