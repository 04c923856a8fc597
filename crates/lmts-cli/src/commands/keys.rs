//! `lmts keys status | rotate`: master-key rotation against the database (both backends); the
//! rules are `lmts_server::keys`'s.

use lmts_server::{clock::Clock, crypto::Keyring, keys};

use super::{admin::store_of, serve::read_key_file};
use crate::{
    cli::{KeysCommand, KeysRotateArgs, StoreArgs},
    exit::{CommandError, ConfigError},
    output::Output,
};

/// `lmts keys status`.
async fn status(store: StoreArgs, output: &Output) -> Result<(), CommandError> {
    let store = store_of(&store).await?;
    let uses = store.key_usage(Clock::system().now()).await?;
    if output.is_json() {
        let uses: Vec<_> = uses
            .iter()
            .map(|key| serde_json::json!({ "keyId": key.key_id, "sealed": key.sealed, "live": key.live }))
            .collect();
        output.json(&uses);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = uses
        .iter()
        .map(|key| {
            vec![
                key.key_id.clone(),
                key.sealed.to_string(),
                key.live.to_string(),
            ]
        })
        .collect();
    output.table(&["KEY ID", "SEALED ROWS", "LIVE TOKENS"], &rows);
    Ok(())
}

/// The keyring of a rotation: the new key seals, the old ones open.
fn keyring_of(args: &KeysRotateArgs) -> Result<Keyring, CommandError> {
    let new = read_key_file(&args.new_master_key_file)?;
    let old = match &args.master_key_file {
        Some(path) => read_key_file(path)?,
        None => read_key_file(
            &args
                .store
                .data_dir
                .data_dir
                .join(lmts_server::crypto::MASTER_KEY_FILE),
        )?,
    };
    let mut retired = vec![old.to_string()];
    for path in &args.retired_master_key_files {
        retired.push(read_key_file(path)?.to_string());
    }
    Keyring::from_base64(&new, &retired).map_err(|error| ConfigError(error.to_string()).into())
}

/// `lmts keys rotate`.
async fn rotate(args: KeysRotateArgs, output: &Output) -> Result<(), CommandError> {
    let keyring = keyring_of(&args)?;
    let store = store_of(&args.store).await?;
    let moved = keys::reseal(&*store, &keyring, args.batch, |moved| {
        output.note(&format!("re-sealed {moved} secrets"));
    })
    .await?;
    let current = keyring.current_key_id();
    if output.is_json() {
        output.json(&serde_json::json!({ "keyId": current, "resealed": moved }));
    } else {
        println!("every secret is sealed under {current} ({moved} re-sealed now)");
    }
    output.note("restart the instances with the new key as --master-key-file; the old one can then be retired");
    Ok(())
}

/// Runs a `keys` subcommand.
pub async fn run(command: KeysCommand, output: &Output) -> Result<(), CommandError> {
    match command {
        KeysCommand::Status(store) => status(store, output).await,
        KeysCommand::Rotate(args) => rotate(args, output).await,
    }
}
