//! `commit --change`: Dockerfile instructions that edit a committed
//! image's config, as `docker commit --change` takes them: `CMD`,
//! `ENTRYPOINT` (a JSON array, or a shell form run by `/bin/sh -c`),
//! `ENV` (`K=V ...` or `K V`), `EXPOSE` (`80`, `53/udp`), `LABEL`
//! (`K=V ...`), `USER` and `WORKDIR`. Pure: text in, a config edited.

use serde_json::{Map, Value};

/// One instruction, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Cmd(Vec<String>),
    Entrypoint(Vec<String>),
    Env(Vec<(String, String)>),
    Expose(Vec<String>),
    Label(Vec<(String, String)>),
    User(String),
    Workdir(String),
}

const KNOWN: &str = "CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR";

/// Parses one `--change` value; the error names the instruction.
pub fn parse(text: &str) -> Result<Change, String> {
    let text = text.trim();
    let (word, args) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    let (keyword, args) = (word.to_ascii_uppercase(), args.trim());
    if keyword.is_empty() {
        return Err(format!("an empty change: give an instruction ({KNOWN})"));
    }
    if !KNOWN.split(", ").any(|k| k == keyword) {
        return Err(format!("{word}: not an instruction commit can apply (it takes {KNOWN})"));
    }
    if args.is_empty() {
        return Err(format!("{keyword} needs an argument"));
    }
    let err = |m: String| format!("{keyword} {args}: {m}");
    Ok(match keyword.as_str() {
        "CMD" => Change::Cmd(command(args).map_err(err)?),
        "ENTRYPOINT" => Change::Entrypoint(command(args).map_err(err)?),
        "ENV" => Change::Env(pairs(args, true).map_err(err)?),
        "LABEL" => Change::Label(pairs(args, false).map_err(err)?),
        "EXPOSE" => Change::Expose(args.split_whitespace().map(port).collect::<Result<_, _>>().map_err(err)?),
        "USER" if args.split_whitespace().count() == 1 => Change::User(args.to_string()),
        "USER" => return Err(err("one user (NAME, UID or UID:GID)".into())),
        _ => Change::Workdir(words(args).map_err(err)?.join(" ")),
    })
}

/// The JSON (exec) form, or the shell form run by `/bin/sh -c`.
fn command(args: &str) -> Result<Vec<String>, String> {
    if args.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(args).map_err(|e| format!("not a JSON array of strings: {e}"));
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), args.into()])
}

/// Words as a Dockerfile splits them: quotes group (and are removed), a
/// backslash escapes the next character.
fn words(args: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    let mut quote: Option<char> = None;
    let mut chars = args.chars();
    while let Some(c) = chars.next() {
        match (c, quote) {
            ('\\', q) if q != Some('\'') => {
                let next = chars.next().ok_or("a backslash at the end")?;
                cur.get_or_insert_with(String::new).push(next);
            }
            (q @ ('"' | '\''), None) => {
                quote = Some(q);
                cur.get_or_insert_with(String::new);
            }
            (c, Some(q)) if c == q => quote = None,
            (c, None) if c.is_whitespace() => out.extend(cur.take()),
            (c, _) => cur.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(q) = quote {
        return Err(format!("an unclosed {q}"));
    }
    out.extend(cur);
    Ok(out)
}

/// `K=V ...`, or (for ENV, when the first word has no `=`) `K V...`.
fn pairs(args: &str, legacy: bool) -> Result<Vec<(String, String)>, String> {
    let first = args.split_whitespace().next().unwrap_or("");
    if legacy && !first.contains('=') {
        let rest = args[first.len()..].trim();
        if rest.is_empty() {
            return Err(format!("no value for {first} (K=V, or K V)"));
        }
        return Ok(vec![(first.to_string(), rest.to_string())]);
    }
    words(args)?
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some(("", _)) => Err(format!("{w:?}: an empty name")),
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => Err(format!("{w:?} is not K=V")),
        })
        .collect()
}

/// `80`, `80/tcp`, `53/udp`, as the config's `80/tcp` key.
fn port(p: &str) -> Result<String, String> {
    let (number, proto) = p.split_once('/').unwrap_or((p, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("{p}: the protocol is tcp, udp or sctp"));
    }
    match number.parse::<u16>() {
        Ok(n) if n > 0 => Ok(format!("{n}/{proto}")),
        _ => Err(format!("{p}: a port is a number from 1 to 65535")),
    }
}

/// The run config object (`config` of an image config), made if missing.
fn run_config(image_config: &mut Value) -> &mut Map<String, Value> {
    if !image_config["config"].is_object() {
        image_config["config"] = Value::Object(Map::new());
    }
    image_config["config"].as_object_mut().expect("an object just made")
}

/// Applies `changes` in order to an image config (the whole JSON document).
pub fn apply(image_config: &mut Value, changes: &[Change]) {
    if !image_config.is_object() {
        *image_config = Value::Object(Map::new());
    }
    let config = run_config(image_config);
    for change in changes {
        match change {
            Change::Cmd(c) => {
                config.insert("Cmd".into(), Value::from(c.clone()));
            }
            Change::Entrypoint(e) => {
                config.insert("Entrypoint".into(), Value::from(e.clone()));
                // As in a Dockerfile: an inherited CMD does not survive a
                // new ENTRYPOINT (a CMD given after it sets one again).
                config.insert("Cmd".into(), Value::Null);
            }
            Change::Env(vars) => {
                let mut env: Vec<String> = config
                    .get("Env")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
                    .unwrap_or_default();
                for (k, v) in vars {
                    env.retain(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) != k);
                    env.push(format!("{k}={v}"));
                }
                config.insert("Env".into(), Value::from(env));
            }
            Change::Expose(ports) => {
                let map = object(config, "ExposedPorts");
                for p in ports {
                    map.insert(p.clone(), Value::Object(Map::new()));
                }
            }
            Change::Label(labels) => {
                let map = object(config, "Labels");
                for (k, v) in labels {
                    map.insert(k.clone(), Value::from(v.clone()));
                }
            }
            Change::User(u) => {
                config.insert("User".into(), Value::from(u.clone()));
            }
            Change::Workdir(w) => {
                // Relative: from the working directory so far, as in a Dockerfile.
                let dir = if w.starts_with('/') {
                    w.clone()
                } else {
                    let base = config.get("WorkingDir").and_then(Value::as_str).unwrap_or("/");
                    format!("{}/{w}", base.trim_end_matches('/'))
                };
                config.insert("WorkingDir".into(), Value::from(dir));
            }
        }
    }
}

fn object<'a>(config: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = config.entry(key.to_string()).or_insert_with(|| Value::Object(Map::new()));
    if !slot.is_object() {
        *slot = Value::Object(Map::new());
    }
    slot.as_object_mut().expect("an object just made")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_instruction_in_its_forms() {
        assert_eq!(
            parse(r#"CMD ["nginx", "-g", "daemon off;"]"#),
            Ok(Change::Cmd(vec!["nginx".into(), "-g".into(), "daemon off;".into()]))
        );
        assert_eq!(
            parse("cmd echo hi && sleep 1"),
            Ok(Change::Cmd(vec!["/bin/sh".into(), "-c".into(), "echo hi && sleep 1".into()]))
        );
        assert_eq!(parse(r#"ENTRYPOINT ["/init"]"#), Ok(Change::Entrypoint(vec!["/init".into()])));
        assert_eq!(
            parse("ENV A=1 B=\"two words\""),
            Ok(Change::Env(vec![("A".into(), "1".into()), ("B".into(), "two words".into())]))
        );
        assert_eq!(parse("ENV GREETING hello world"), Ok(Change::Env(vec![("GREETING".into(), "hello world".into())])));
        assert_eq!(
            parse("EXPOSE 80 53/udp 8080/TCP"),
            Ok(Change::Expose(vec!["80/tcp".into(), "53/udp".into(), "8080/tcp".into()]))
        );
        assert_eq!(
            parse("LABEL a=b 'c d'=e"),
            Ok(Change::Label(vec![("a".into(), "b".into()), ("c d".into(), "e".into())]))
        );
        assert_eq!(parse("USER 1000:1000"), Ok(Change::User("1000:1000".into())));
        assert_eq!(parse("WORKDIR /srv/app"), Ok(Change::Workdir("/srv/app".into())));
    }

    #[test]
    fn errors_name_the_instruction() {
        let e = |s: &str| parse(s).unwrap_err();
        assert_eq!(
            e("RUN make"),
            "RUN: not an instruction commit can apply (it takes CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR)"
        );
        assert_eq!(e("CMD"), "CMD needs an argument");
        assert!(
            e(r#"CMD ["a", 1]"#).starts_with("CMD [\"a\", 1]: not a JSON array of strings"),
            "{}",
            e(r#"CMD ["a", 1]"#)
        );
        assert_eq!(e("EXPOSE 70000"), "EXPOSE 70000: 70000: a port is a number from 1 to 65535");
        assert_eq!(e("EXPOSE 80/icmp"), "EXPOSE 80/icmp: 80/icmp: the protocol is tcp, udp or sctp");
        assert_eq!(e("LABEL novalue"), "LABEL novalue: \"novalue\" is not K=V");
        assert_eq!(e("ENV =x"), "ENV =x: \"=x\": an empty name");
        assert_eq!(e("ENV ALONE"), "ENV ALONE: no value for ALONE (K=V, or K V)");
        assert_eq!(e("LABEL a=\"open"), "LABEL a=\"open: an unclosed \"");
        assert_eq!(e("USER a b"), "USER a b: one user (NAME, UID or UID:GID)");
        assert_eq!(
            e("  "),
            "an empty change: give an instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, USER, WORKDIR)"
        );
    }

    #[test]
    fn changes_edit_the_config_as_a_dockerfile_would() {
        let mut c = serde_json::json!({"architecture": "amd64", "config": {"Env": ["PATH=/bin", "A=old"], "Cmd": ["sh"], "WorkingDir": "/srv"}});
        let changes: Vec<Change> =
            ["ENV A=new B=2", "ENTRYPOINT [\"/init\"]", "EXPOSE 80", "LABEL x=y", "WORKDIR app", "USER nobody"]
                .iter()
                .map(|s| parse(s).unwrap())
                .collect();
        apply(&mut c, &changes);
        assert_eq!(c["config"]["Env"], serde_json::json!(["PATH=/bin", "A=new", "B=2"]));
        assert_eq!(c["config"]["Entrypoint"], serde_json::json!(["/init"]));
        assert_eq!(c["config"]["Cmd"], Value::Null);
        assert_eq!(c["config"]["ExposedPorts"], serde_json::json!({"80/tcp": {}}));
        assert_eq!(c["config"]["Labels"], serde_json::json!({"x": "y"}));
        assert_eq!(c["config"]["WorkingDir"], "/srv/app");
        assert_eq!(c["config"]["User"], "nobody");
        assert_eq!(c["architecture"], "amd64");
        // A CMD after the ENTRYPOINT is kept.
        apply(&mut c, &[parse("CMD [\"serve\"]").unwrap()]);
        assert_eq!(c["config"]["Cmd"], serde_json::json!(["serve"]));
    }
}
