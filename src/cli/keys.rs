//! `gctr keygen` (a new key on stdout) and `gctr keys` (the gossip keyring of a running
//! cluster, through one node's HTTP API: list, install, use, remove, enforce).

use super::client::{client_for, common_help, target, DISCOVERY_ENV};
use super::cluster::{print_json, print_rows};
use super::security::{ClientCredentialFlags, TOKEN_ENV};
use super::CliError;
use crate::http::JsonClient;
use crate::keyring::cluster::KeysView;
use crate::keyring::{Key, KeyId};

const KEYGEN_HELP: &str = "gctr keygen: print a new random gossip key (base64)

Usage: gctr keygen

Put it alone in a file for `gctr node --keyring FILE`, or install it in a running
cluster with `gctr keys install KEY`. Anyone holding it can join the cluster's gossip:
keep it secret.
";

pub fn keygen(parser: &mut lexopt::Parser) -> Result<(), CliError> {
    use lexopt::prelude::*;
    if let Some(arg) = parser.next()? {
        return match arg {
            Short('h') | Long("help") => {
                print!("{KEYGEN_HELP}");
                Ok(())
            }
            _ => Err(arg.unexpected().into()),
        };
    }
    let key = Key::generate().map_err(|e| CliError::Failed(format!("no random bytes: {e}")))?;
    println!("{}", key.to_base64());
    Ok(())
}

fn help() -> String {
    format!(
        "gctr keys: the gossip keyring of a running cluster, through one node

Usage: gctr keys list [--node NAME | --http ADDR] [--json]
       gctr keys install KEY [...]
       gctr keys use KEY [...]
       gctr keys remove KEY [...]
       gctr keys enforce [...]

  list           every key, how many live members hold it and seal with it, the mode
  install KEY    install KEY (base64) on every member: it opens gossip at once, and
                 seals it once made primary
  use KEY        make KEY (base64, or its 8-hex-digit id) the primary on every member;
                 refused until every live member holds it
  remove KEY     remove KEY (base64 or id) from every member; the primary cannot be
                 removed; connections made with it are re-made with another key
  enforce        end the transition (--keyring-transition): every member sends keyed
                 gossip only, then refuses plaintext once all do; refused while a live
                 member has no keyring

Changes spread to every member within about a second and are written to each
member's keyring file. A key is sent to the node in the request body: use this over
loopback or TLS only.

{}",
        common_help()
    )
}

enum Action {
    List,
    Install(Key),
    Use(KeyId),
    Remove(KeyId),
    Enforce,
}

pub fn run(parser: &mut lexopt::Parser) -> Result<(), CliError> {
    use lexopt::prelude::*;
    let mut words: Vec<String> = Vec::new();
    let (mut http, mut node, mut discovery, mut json) = (None, None, None, false);
    let mut credentials = ClientCredentialFlags::default();
    while let Some(arg) = parser.next()? {
        match arg {
            Short('h') | Long("help") => {
                print!("{}", help());
                return Ok(());
            }
            Long("http") => http = Some(parser.value()?.string()?),
            Long("node") => node = Some(parser.value()?.string()?),
            Long("discovery") => discovery = Some(parser.value()?.string()?),
            Long("json") => json = true,
            Long(flag) if ClientCredentialFlags::is_flag(flag) => {
                let flag = flag.to_owned();
                credentials.take(&flag, parser)?;
            }
            Value(v) => words.push(v.string()?),
            _ => return Err(arg.unexpected().into()),
        }
    }
    let action = action(&words)?;
    let env = std::env::var(DISCOVERY_ENV).ok();
    let credentials = credentials.finish(std::env::var(TOKEN_ENV).ok())?;
    let client = client_for(&target(http, node, discovery, env)?, &credentials)?;
    let view: KeysView = match action {
        Action::List => client.get("/keys")?,
        Action::Install(key) => {
            client.post_json("/keys", &serde_json::json!({ "key": key.to_base64() }))?
        }
        Action::Use(id) => client.post_json(
            "/keys/primary",
            &serde_json::json!({ "key": id.to_string() }),
        )?,
        Action::Remove(id) => client.delete(&format!("/keys/{id}"))?,
        Action::Enforce => client.post("/keys/enforce", &[])?,
    };
    if json {
        return print_json(&view);
    }
    print_view(&client, &view);
    Ok(())
}

fn action(words: &[String]) -> Result<Action, CliError> {
    let usage = |m: &str| CliError::Usage(m.to_owned());
    let key = |w: &str| {
        KeyId::parse(w)
            .or_else(|| Key::parse(w).ok().map(|k| k.id()))
            .ok_or_else(|| usage(&format!("{w:?} is neither a key (base64) nor a key id")))
    };
    match words {
        [] => Err(usage(
            "`gctr keys` needs list, install, use, remove or enforce",
        )),
        [w] if w == "list" => Ok(Action::List),
        [w] if w == "enforce" => Ok(Action::Enforce),
        [w, k] if w == "install" => Key::parse(k)
            .map(Action::Install)
            .map_err(|e| usage(&format!("install: {e}"))),
        [w, k] if w == "use" => Ok(Action::Use(key(k)?)),
        [w, k] if w == "remove" => Ok(Action::Remove(key(k)?)),
        [w, ..] => Err(usage(&format!(
            "`gctr keys {w}`: expected list, install KEY, use KEY, remove KEY or enforce"
        ))),
    }
}

fn print_view(client: &JsonClient, view: &KeysView) {
    let rows: Vec<Vec<String>> = view
        .keys
        .iter()
        .map(|k| {
            vec![
                k.id.clone(),
                if k.primary { "yes" } else { "" }.to_owned(),
                format!("{}/{}", k.members, view.live_members),
                format!("{}/{}", k.primary_members, view.live_members),
            ]
        })
        .collect();
    print_rows(&["KEY", "PRIMARY", "HELD BY", "SEALS WITH"], &rows);
    println!(
        "node {}: mode {}, keyring version {} (by {}), {} live members",
        client.base(),
        view.mode.name(),
        view.version,
        view.version_by,
        view.live_members
    );
    if !view.unreported.is_empty() {
        println!("not reported yet: {}", view.unreported.join(", "));
    }
    if !view.behind.is_empty() {
        println!("older keyring: {}", view.behind.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Result<Action, CliError> {
        action(&w.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn actions_and_their_usage_errors() {
        let key = Key::generate().unwrap();
        assert!(matches!(words(&["list"]), Ok(Action::List)));
        assert!(matches!(words(&["enforce"]), Ok(Action::Enforce)));
        assert!(
            matches!(words(&["install", &key.to_base64()]), Ok(Action::Install(k)) if k == key)
        );
        assert!(matches!(words(&["use", &key.to_base64()]), Ok(Action::Use(id)) if id == key.id()));
        assert!(
            matches!(words(&["remove", &key.id().to_string()]), Ok(Action::Remove(id)) if id == key.id())
        );
        for bad in [
            &[][..],
            &["install"],
            &["install", "short"],
            &["use", "x"],
            &["list", "x"],
            &["rotate"],
        ] {
            assert!(matches!(words(bad), Err(CliError::Usage(_))), "{bad:?}");
        }
    }
}
