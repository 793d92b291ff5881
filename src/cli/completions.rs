//! `api2csv completions bash|zsh|fish` and `api2csv man`: shell completions and a man
//! page made from the same usage texts `--help` prints, so they cannot drift apart
//! and need no generator crate.

use lexopt::prelude::*;

use super::{help, lex, say, usage, COMMANDS, USAGE as MAIN_USAGE};
use crate::error::Failure;

pub const USAGE: &str = "\
api2csv completions <bash|zsh|fish>
api2csv man

`completions` prints a completion script for the shell: commands, their flags and the
connector names. Install it with, for bash:
    api2csv completions bash > ~/.local/share/bash-completion/completions/api2csv
for zsh, into a directory of $fpath as `_api2csv`; for fish:
    api2csv completions fish > ~/.config/fish/completions/api2csv.fish
`man` prints the manual page (roff): api2csv man > api2csv.1; man ./api2csv.1
";

/// The `--flags` a usage text names, in order, once each.
pub fn flags(text: &str) -> Vec<&str> {
    let mut all: Vec<&str> = Vec::new();
    let words = text.split(|c: char| c.is_whitespace() || "[]|,()`".contains(c));
    for w in words
        .filter(|w| w.len() > 2 && w.starts_with("--") && w[2..].chars().all(|c| c.is_ascii_lowercase() || c == '-'))
    {
        if !all.contains(&w) {
            all.push(w);
        }
    }
    all
}

pub fn run_completions(p: &mut lexopt::Parser) -> Result<(), Failure> {
    let mut shell = None;
    while let Some(arg) = p.next().map_err(lex)? {
        match arg {
            Long("help") | Short('h') => return help(USAGE),
            Value(v) if shell.is_none() => shell = Some(v.string().map_err(lex)?),
            other => return Err(lex(other.unexpected()).into()),
        }
    }
    let script = match shell.as_deref() {
        Some("bash") => bash(),
        Some("zsh") => zsh(),
        Some("fish") => fish(),
        _ => return Err(usage("completions: which shell? bash, zsh or fish").into()),
    };
    say(&script);
    Ok(())
}

fn names() -> Vec<&'static str> {
    COMMANDS.iter().map(|c| c.name).collect()
}

fn connectors() -> String {
    crate::connector::CONNECTORS.iter().map(|d| d.name).collect::<Vec<_>>().join(" ")
}

fn bash() -> String {
    let mut cases = String::new();
    for c in COMMANDS {
        cases.push_str(&format!("        {}) opts=\"{} --help\" ;;\n", c.name, flags(c.usage).join(" ")));
    }
    format!(
        "# bash completion for api2csv, made by `api2csv completions bash`
_api2csv() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} opts
    if [ \"$COMP_CWORD\" -eq 1 ]; then
        COMPREPLY=($(compgen -W \"{commands} --help --version\" -- \"$cur\"))
        return
    fi
    case ${{COMP_WORDS[1]}} in
{cases}        *) opts=\"\" ;;
    esac
    case $cur in
        -*) COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\")) ;;
        *) COMPREPLY=($(compgen -W \"{connectors}\" -- \"$cur\") $(compgen -f -- \"$cur\")) ;;
    esac
}}
complete -o filenames -F _api2csv api2csv
",
        commands = names().join(" "),
        connectors = connectors(),
    )
}

fn zsh() -> String {
    let mut cases = String::new();
    for c in COMMANDS {
        let fl: Vec<String> = flags(c.usage).iter().map(|f| format!("'{f}[]'")).collect();
        cases.push_str(&format!("        {}) _arguments '*:arg:_files' {} '--help[]' ;;\n", c.name, fl.join(" ")));
    }
    format!(
        "#compdef api2csv
# zsh completion for api2csv, made by `api2csv completions zsh`
_api2csv() {{
    if (( CURRENT == 2 )); then
        compadd -- {commands} --help --version
        return
    fi
    case $words[2] in
{cases}    esac
}}
_api2csv \"$@\"
",
        commands = names().join(" "),
    )
}

fn fish() -> String {
    let mut s = String::from("# fish completion for api2csv, made by `api2csv completions fish`\n");
    s.push_str(&format!("complete -c api2csv -n __fish_use_subcommand -f -a '{}'\n", names().join(" ")));
    for c in COMMANDS {
        for f in flags(c.usage) {
            s.push_str(&format!("complete -c api2csv -n '__fish_seen_subcommand_from {}' -l {}\n", c.name, &f[2..]));
        }
    }
    s.push_str(&format!(
        "complete -c api2csv -n '__fish_seen_subcommand_from sync check tables mock' -a '{}'\n",
        connectors()
    ));
    s
}

pub fn run_man(p: &mut lexopt::Parser) -> Result<(), Failure> {
    if let Some(arg) = p.next().map_err(lex)? {
        return match arg {
            Long("help") | Short('h') => help(USAGE),
            other => Err(lex(other.unexpected()).into()),
        };
    }
    say(&man());
    Ok(())
}

/// The manual page: the main usage text, then each command's, as preformatted roff.
pub fn man() -> String {
    let mut s = format!(
        ".TH API2CSV 1 \"\" \"api2csv {}\" \"User Commands\"\n.SH NAME\napi2csv \\- {}\n.SH SYNOPSIS\n",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_DESCRIPTION")
    );
    s.push_str(&verbatim(MAIN_USAGE));
    s.push_str(".SH COMMANDS\n");
    // `man` shares the usage text of `completions`: once is enough.
    for c in COMMANDS.iter().filter(|c| c.name != "man") {
        s.push_str(&format!(".SS {}\n", c.name));
        s.push_str(&verbatim(c.usage));
    }
    s.push_str(".SH SEE ALSO\nREADME.md in the source tree: configuration, output files, scheduling.\n");
    s
}

/// `text` as a roff no-fill block, escaped so no line is read as a request.
fn verbatim(text: &str) -> String {
    let mut s = String::from(".nf\n");
    for line in super::usage_text(text).lines() {
        let line = line.replace('\\', "\\e");
        if line.starts_with(['.', '\'']) {
            s.push_str("\\&");
        }
        s.push_str(&line);
        s.push('\n');
    }
    s.push_str(".fi\n");
    s
}
