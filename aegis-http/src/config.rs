//! Settings from a TOML file, merged under the command line and the environment.
//!
//! A key of the file is the long name of a flag without its dashes, as the command line
//! spells it (kebab-case): `run-timeout = 600` sets `--run-timeout 600`. Precedence is flag,
//! then environment variable, then file, then the built-in default. The merge is generic: it
//! reads clap's [`ArgMatches::value_source`] for each argument of the subcommand and turns
//! every file key whose argument came from neither the command line nor the environment into
//! one more command-line argument, then parses again. So clap checks file values exactly as it
//! checks flags, and any flag added to the subcommand can be set from the file without code
//! here.
//!
//! A value is a string, an integer, a float or a boolean; an array sets a flag that takes
//! several values once per element. A boolean sets a switch (`true` passes the flag, `false`
//! leaves it off). An unknown key is an error that names the closest valid key.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Command};

/// Arguments the file cannot set: the file's own path and clap's built-in flags.
const NOT_IN_FILE: &[&str] = &["config", "help", "version"];

/// A configuration file that cannot be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("reading the configuration file {} failed: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("the configuration file {} is not valid TOML: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line and column.
        message: String,
    },
    /// A key names no setting of the subcommand.
    #[error("unknown key `{key}` in the configuration file {}{}", path.display(), suggestion.as_ref().map(|valid| format!("; did you mean `{valid}`?")).unwrap_or_default())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The unknown key.
        key: String,
        /// The valid key closest to it, if any is close.
        suggestion: Option<String>,
    },
    /// A key's value has the wrong type or is rejected by the flag's parser.
    #[error("invalid value for `{key}` in the configuration file {}: {message}", path.display())]
    InvalidValue {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The reason, from clap or the TOML type check.
        message: String,
    },
    /// The merged settings are rejected as a whole, such as two keys that conflict.
    #[error("the settings of the configuration file {} conflict with each other or with the command line: {message}", path.display())]
    Merge {
        /// The file.
        path: PathBuf,
        /// Clap's message.
        message: String,
    },
}

/// A subcommand's settings after the merge, and which file keys took effect.
#[derive(Debug)]
#[non_exhaustive]
pub struct Merged {
    /// The matches of the whole command line, file settings included.
    pub matches: ArgMatches,
    /// The file's keys that were applied, sorted; keys overridden by a flag or an
    /// environment variable are not listed.
    pub applied: Vec<String>,
}

/// Applies the TOML file named by `subcommand`'s `--config` argument (if given) to `matches`,
/// which `command` parsed from `args`. Returns `matches` unchanged when the subcommand was
/// not used or has no file.
///
/// # Errors
///
/// Fails when the file cannot be read or parsed, has an unknown key, or sets a value the
/// flag's parser rejects.
pub fn merge_config_file(
    command: &Command,
    args: Vec<OsString>,
    matches: ArgMatches,
    subcommand: &str,
) -> Result<Merged, ConfigError> {
    let unchanged = |matches| Ok(Merged { matches, applied: Vec::new() });
    let (Some(sub_matches), Some(sub_command)) =
        (matches.subcommand_matches(subcommand), command.find_subcommand(subcommand))
    else {
        return unchanged(matches);
    };
    let Some(path) = sub_matches.get_one::<PathBuf>("config").cloned() else {
        return unchanged(matches);
    };

    let table = read_table(&path)?;
    let mut extra = Vec::new();
    let mut applied = Vec::new();
    for (key, value) in &table {
        let arg = find_arg(sub_command, key).ok_or_else(|| unknown_key(&path, sub_command, key))?;
        let explicit = matches!(
            sub_matches.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        );
        let arguments = to_arguments(arg, value).map_err(|message| invalid(&path, key, message))?;
        check_arguments(sub_command, &arguments).map_err(|message| invalid(&path, key, message))?;
        if !explicit {
            extra.extend(arguments);
            applied.push(key.clone());
        }
    }
    if extra.is_empty() {
        return unchanged(matches);
    }

    // Everything after a subcommand's name belongs to that subcommand, so flags appended at
    // the end reach it as if typed last.
    let merged = command
        .clone()
        .try_get_matches_from(args.into_iter().chain(extra.into_iter().map(OsString::from)))
        .map_err(|error| ConfigError::Merge { path: path.clone(), message: first_line(&error.to_string()) })?;
    Ok(Merged { matches: merged, applied })
}

/// Returns the environment variable that the value clap rejected in `error` came from, if it
/// came from one. clap's message names only the flag, which misleads a user who never typed it.
/// `args` is the command line that was parsed.
pub fn rejected_env_variable(command: &Command, args: &[OsString], error: &clap::Error) -> Option<String> {
    if !matches!(error.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation) {
        return None;
    }
    let invalid = error.get(ContextKind::InvalidArg)?;
    let ContextValue::String(name) = invalid else {
        return None;
    };
    // clap writes the argument as `--name <VALUE>`.
    let long = name.strip_prefix("--")?.split([' ', '=']).next()?;

    // Subcommands may share a flag name with different variables (`--bind`), so only the
    // subcommand on the command line is searched.
    let subcommand = args.iter().skip(1).filter_map(|arg| arg.to_str()).find_map(|arg| command.find_subcommand(arg));
    let arg = subcommand.unwrap_or(command).get_arguments().find(|arg| arg.get_long() == Some(long))?;
    let variable = arg.get_env()?;
    std::env::var_os(variable)?;

    // Parse again without the variable. If the error goes away, the value came from the
    // environment, whatever spelling of the flag the command line used.
    let id = arg.get_id().clone();
    let without_variable = match subcommand {
        Some(sub) => command.clone().mut_subcommand(sub.get_name(), |sub| sub.mut_arg(&id, |arg| arg.env(None))),
        None => command.clone().mut_arg(&id, |arg| arg.env(None)),
    };
    let same_error = match without_variable.try_get_matches_from(args.iter().cloned()) {
        Ok(_) => false,
        Err(again) => again.get(ContextKind::InvalidArg) == Some(invalid),
    };
    (!same_error).then(|| variable.to_string_lossy().into_owned())
}

fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    text.parse::<toml::Table>()
        .map_err(|error| ConfigError::Parse { path: path.to_owned(), message: error.to_string() })
}

/// Returns the argument whose long name is `key`, unless the file may not set it.
fn find_arg<'c>(command: &'c Command, key: &str) -> Option<&'c Arg> {
    if NOT_IN_FILE.contains(&key) {
        return None;
    }
    command.get_arguments().find(|arg| arg.get_long() == Some(key))
}

/// Returns the keys the file may use: every long flag but [`NOT_IN_FILE`].
pub fn valid_keys(command: &Command) -> Vec<&str> {
    command.get_arguments().filter_map(Arg::get_long).filter(|long| !NOT_IN_FILE.contains(long)).collect()
}

fn unknown_key(path: &Path, command: &Command, key: &str) -> ConfigError {
    // A snake_case spelling of a valid key is the likeliest mistake, so the comparison uses
    // the kebab-case form and such a key gets its valid spelling as the suggestion.
    let kebab = key.replace('_', "-");
    let keys = valid_keys(command);
    let suggestion = keys
        .iter()
        .map(|valid| (strsim::jaro_winkler(&kebab, valid), *valid))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|left, right| left.0.total_cmp(&right.0))
        .map(|(_, valid)| valid.to_owned());
    ConfigError::UnknownKey { path: path.to_owned(), key: key.to_owned(), suggestion }
}

fn invalid(path: &Path, key: &str, message: String) -> ConfigError {
    ConfigError::InvalidValue { path: path.to_owned(), key: key.to_owned(), message }
}

/// Turns one file value into the command-line arguments that set it.
fn to_arguments(arg: &Arg, value: &toml::Value) -> Result<Vec<String>, String> {
    let long = arg.get_long().unwrap_or_default();
    if matches!(arg.get_action(), ArgAction::SetTrue | ArgAction::SetFalse) {
        let toml::Value::Boolean(on) = value else {
            return Err(format!("expected true or false, got {}", value.type_str()));
        };
        // The switch's default is its `false`; only `true` needs the flag.
        let wants_flag = *on == matches!(arg.get_action(), ArgAction::SetTrue);
        return Ok(if wants_flag { vec![format!("--{long}")] } else { Vec::new() });
    }

    let values = match value {
        toml::Value::Array(items) if matches!(arg.get_action(), ArgAction::Append) => items.iter().collect(),
        toml::Value::Array(_) => return Err("expected a single value, got an array".to_owned()),
        other => vec![other],
    };
    values.into_iter().map(|value| scalar_text(value).map(|text| format!("--{long}={text}"))).collect()
}

fn scalar_text(value: &toml::Value) -> Result<String, String> {
    match value {
        toml::Value::String(text) => Ok(text.clone()),
        toml::Value::Integer(number) => Ok(number.to_string()),
        // `Display` writes 4.0 as `4`, which an integer setting would take. `Debug` keeps the
        // point, so only settings that take fractions accept a float.
        toml::Value::Float(number) => Ok(format!("{number:?}")),
        toml::Value::Boolean(flag) => Ok(flag.to_string()),
        other => Err(format!("expected a string, number or boolean, got {}", other.type_str())),
    }
}

/// Parses `arguments` alone against the subcommand, so a bad value is reported with its key
/// before the merge.
fn check_arguments(command: &Command, arguments: &[String]) -> Result<(), String> {
    let name = command.get_name().to_owned();
    let parsed = command.clone().try_get_matches_from(std::iter::once(name).chain(arguments.iter().cloned()));
    parsed.map(drop).map_err(|error| first_line(&error.to_string()))
}

/// Keeps the first line of a clap error, without its `error: ` prefix and usage hints, and
/// the lines that list the possible values or suggest one.
fn first_line(message: &str) -> String {
    let mut lines = message.lines();
    let first = lines.next().unwrap_or_default();
    let mut kept_lines = vec![first.strip_prefix("error: ").unwrap_or(first)];
    kept_lines
        .extend(lines.map(str::trim).filter(|line| line.starts_with("[possible values:") || line.starts_with("tip:")));
    kept_lines.join(" ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a panic is how a test reports failure")]
mod tests {
    use std::io::Write;

    use clap::{Parser, Subcommand};

    use super::*;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(Subcommand, Debug)]
    enum Sub {
        Serve {
            #[arg(long)]
            config: Option<PathBuf>,
            #[arg(long, env = "AEGIS_CONFIG_TEST_WORKERS", default_value_t = 4)]
            workers: usize,
            #[arg(long)]
            verbose: bool,
            #[arg(long)]
            origin: Vec<String>,
            #[arg(long, value_enum, default_value_t = Mode::Negotiated)]
            mode: Mode,
            #[arg(long)]
            rate: Option<f64>,
        },
    }

    #[derive(Clone, Copy, Debug, clap::ValueEnum)]
    enum Mode {
        Negotiated,
        Http2,
    }

    fn merge(file: &str, flags: &[&str]) -> Result<(Cli, Vec<String>), ConfigError> {
        let mut config = tempfile::NamedTempFile::new().unwrap();
        config.write_all(file.as_bytes()).unwrap();
        let path = config.path().to_str().unwrap().to_owned();
        let mut args: Vec<OsString> = ["aegis", "serve", "--config", path.as_str()].map(OsString::from).to_vec();
        args.extend(flags.iter().map(OsString::from));

        let command = <Cli as clap::CommandFactory>::command();
        let matches = command.clone().try_get_matches_from(args.clone()).unwrap();
        let merged = merge_config_file(&command, args, matches, "serve")?;
        Ok((<Cli as clap::FromArgMatches>::from_arg_matches(&merged.matches).unwrap(), merged.applied))
    }

    #[test]
    fn file_sets_defaults() {
        let (cli, applied) = merge("workers = 9\nverbose = true\norigin = [\"a\", \"b\"]\n", &[]).unwrap();
        let Sub::Serve { workers, verbose, origin, .. } = cli.command;
        assert_eq!(workers, 9);
        assert!(verbose);
        assert_eq!(origin, ["a", "b"]);
        assert_eq!(applied, ["origin", "verbose", "workers"]);
    }

    #[test]
    fn flag_beats_file() {
        let (cli, applied) = merge("workers = 9\n", &["--workers", "2"]).unwrap();
        let Sub::Serve { workers, .. } = cli.command;
        assert_eq!(workers, 2);
        assert!(applied.is_empty());
    }

    #[test]
    fn unknown_key_suggests_kebab_case() {
        let error = merge("wrokers = 9\n", &[]).unwrap_err();
        let ConfigError::UnknownKey { key, suggestion, .. } = &error else { panic!("{error}") };
        assert_eq!(key, "wrokers");
        assert_eq!(suggestion.as_deref(), Some("workers"));
    }

    #[test]
    fn wrong_type_names_key() {
        let error = merge("workers = \"many\"\n", &[]).unwrap_err();
        let ConfigError::InvalidValue { key, message, .. } = &error else { panic!("{error}") };
        assert_eq!(key, "workers");
        assert!(message.contains("many"), "{message}");
    }

    #[test]
    fn float_for_integer_is_rejected() {
        let error = merge("workers = 4.0\n", &[]).unwrap_err();
        let ConfigError::InvalidValue { key, message, .. } = &error else { panic!("{error}") };
        assert_eq!(key, "workers");
        assert!(message.contains("4.0"), "{message}");
    }

    #[test]
    fn float_for_fraction_is_kept() {
        let (cli, _) = merge("rate = 2.5\n", &[]).unwrap();
        let Sub::Serve { rate, .. } = cli.command;
        assert_eq!(rate, Some(2.5));
        let (cli, _) = merge("rate = 3.0\n", &[]).unwrap();
        let Sub::Serve { rate, .. } = cli.command;
        assert_eq!(rate, Some(3.0));
    }

    #[test]
    fn bad_choice_lists_values() {
        let error = merge("mode = \"http3\"\n", &[]).unwrap_err();
        let ConfigError::InvalidValue { key, message, .. } = &error else { panic!("{error}") };
        assert_eq!(key, "mode");
        assert!(message.contains("http3"), "{message}");
        assert!(message.contains("negotiated, http2"), "{message}");
        assert!(message.contains("a similar value exists"), "{message}");
    }

    #[test]
    fn config_key_is_rejected() {
        let error = merge("config = \"other.toml\"\n", &[]).unwrap_err();
        assert!(matches!(error, ConfigError::UnknownKey { .. }), "{error}");
    }
}
