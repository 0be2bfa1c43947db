//! The README's "Quickstart", run literally and in order against the real `economy up`.
//!
//! The commands are not copied here: they are read from README.md's "Quickstart" section
//! (its fenced `sh` blocks, line by line, a trailing `\` joining lines), so the README and
//! this test cannot drift. Each line runs through `bash -c` exactly as written, with the
//! built `economy` binary first on `PATH` and `ECONOMY_ENDPOINT`/`ECONOMY_DATA_DIR`
//! pointing at the test's stack (a person uses the defaults, `http://127.0.0.1:50051` and
//! `./data`; the test's stack listens on free ports). What a person fills in by hand is
//! filled in from what earlier commands printed:
//!
//! - `<that key>`: the last `idempotency key: K` line;
//! - `<code>`: the last `code: C` line;
//! - `<hold id>`, `<item id>`, `<listing id>`, …: the id of the last line starting with
//!   `hold `, `item `, `listing `, …;
//! - `NAME=$(…)` lines set `NAME` for the following lines (e.g. `TOKEN`);
//! - the line defining `economy()` (for a person without `cargo install`) is not run: the
//!   test's `economy` is the built binary;
//! - a line whose programs are not installed (the `grpcurl` example) is skipped with a note;
//!   when they are, it runs with the stack's address in place of `127.0.0.1:50051`.
//!
//! A trailing `# prose → PATTERN / PATTERN` comment promises output: every pattern must
//! match a whole line of stdout, where `<…>` stands for one word and `...` for any text.
//! A pattern starting with `error: ` promises a failure instead: exit status 1 and the
//! pattern on stderr. Every other line must exit 0. The banner of `economy up` is checked
//! against the README's `console` block. After the README, a few checks the README does not
//! show (refusals, paging, the final balances of the trades) run on the same stack.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use economy_e2e::{Run, Stack, economy_binary};

/// The README, compiled in (cargo rebuilds the test when it changes).
const README: &str = include_str!("../README.md");
/// The address a person's stack listens on, as the README writes it.
const README_GATEWAY: &str = "127.0.0.1:50051";
/// How long one README command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// One fenced block of the section.
#[derive(Debug)]
struct Block {
    /// The info string (`sh`, `console`, …).
    info: String,
    /// Its lines, continuation lines joined.
    lines: Vec<String>,
}

/// The fenced blocks of README.md's `## Quickstart` section, in order.
fn quickstart_blocks(readme: &str) -> anyhow::Result<Vec<Block>> {
    let start = readme.find("\n## Quickstart\n").context("README.md has no `## Quickstart` section")?;
    let section = &readme[start + 1..];
    let section = section[3..].find("\n## ").map_or(section, |end| &section[..end + 3]);
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for line in section.lines() {
        match (line.trim_start().strip_prefix("```"), open.take()) {
            (Some(info), None) => open = Some(Block { info: info.trim().to_owned(), lines: Vec::new() }),
            (Some(_), Some(block)) => blocks.push(block),
            (None, Some(mut block)) => {
                match block.lines.last_mut().filter(|last| last.ends_with('\\')) {
                    Some(last) => {
                        last.pop();
                        last.push(' ');
                        last.push_str(line.trim_start());
                    }
                    None => block.lines.push(line.to_owned()),
                }
                open = Some(block);
            }
            (None, None) => {}
        }
    }
    ensure!(open.is_none(), "an unclosed code block in the Quickstart");
    Ok(blocks)
}

/// `line` split into the command and its trailing comment (a `#` after whitespace, outside
/// quotes).
fn split_comment(line: &str) -> (&str, Option<&str>) {
    let (mut single, mut double) = (false, false);
    let mut previous = ' ';
    for (index, character) in line.char_indices() {
        match character {
            '\'' if !double => single = !single,
            '"' if !single => double = !double,
            '#' if !single && !double && previous.is_whitespace() => {
                return (line[..index].trim_end(), Some(line[index + 1..].trim()));
            }
            _ => {}
        }
        previous = character;
    }
    (line.trim_end(), None)
}

/// What a comment promises.
#[derive(Debug, Default, PartialEq)]
struct Promise {
    /// Exit status 1 with the patterns on stderr (else 0, patterns on stdout).
    fails: bool,
    /// Each must match a whole line.
    patterns: Vec<String>,
}

/// The promise of a comment: the text after `→ `, split at ` / `.
fn promise(comment: Option<&str>) -> Promise {
    let Some((_, output)) = comment.and_then(|comment| comment.split_once("→ ")) else {
        return Promise::default();
    };
    let patterns: Vec<String> = output.split(" / ").map(|pattern| pattern.trim().to_owned()).collect();
    Promise { fails: patterns.first().is_some_and(|first| first.starts_with("error: ")), patterns }
}

/// One piece of a pattern.
#[derive(Debug, Clone, PartialEq)]
enum Piece {
    /// This text.
    Literal(String),
    /// `<…>`: one or more non-space characters.
    Word,
    /// `...`: any text, possibly none.
    Any,
}

fn pieces(pattern: &str) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut literal = String::new();
    let mut rest = pattern;
    while let Some(character) = rest.chars().next() {
        let word_end = rest.strip_prefix('<').and_then(|tail| tail.find('>')).map(|end| end + 2);
        let piece = match word_end {
            Some(end) => {
                rest = &rest[end..];
                Piece::Word
            }
            _ if rest.starts_with("...") => {
                rest = &rest[3..];
                Piece::Any
            }
            _ => {
                literal.push(character);
                rest = &rest[character.len_utf8()..];
                continue;
            }
        };
        if !literal.is_empty() {
            pieces.push(Piece::Literal(std::mem::take(&mut literal)));
        }
        pieces.push(piece);
    }
    if !literal.is_empty() {
        pieces.push(Piece::Literal(literal));
    }
    pieces
}

/// True when the whole of `text` matches `pieces`.
fn matches_pieces(pieces: &[Piece], text: &str) -> bool {
    match pieces.split_first() {
        None => text.is_empty(),
        Some((Piece::Literal(literal), rest)) => {
            text.strip_prefix(literal.as_str()).is_some_and(|tail| matches_pieces(rest, tail))
        }
        Some((Piece::Word, rest)) => {
            let word = text.find(char::is_whitespace).unwrap_or(text.len());
            let ends = text[..word].char_indices().map(|(index, character)| index + character.len_utf8());
            ends.into_iter().any(|end| matches_pieces(rest, &text[end..]))
        }
        Some((Piece::Any, rest)) => {
            text.char_indices().map(|(index, _)| index).chain([text.len()]).any(|at| matches_pieces(rest, &text[at..]))
        }
    }
}

/// True when the whole of `line` matches `pattern`.
fn matches(pattern: &str, line: &str) -> bool {
    matches_pieces(&pieces(pattern), line)
}

/// What earlier commands printed that later ones refer to.
#[derive(Debug, Default)]
struct Printed {
    /// `idempotency key: K` → K.
    key: Option<String>,
    /// `code: C` → C.
    code: Option<String>,
    /// `<kind> <id> …` → kind → id (the last one printed).
    ids: BTreeMap<String, String>,
}

impl Printed {
    fn record(&mut self, stdout: &str) {
        for line in stdout.lines() {
            if let Some(key) = line.strip_prefix("idempotency key: ") {
                self.key = Some(key.trim().to_owned());
            } else if let Some(code) = line.strip_prefix("code: ") {
                self.code = Some(code.trim().to_owned());
            } else if let [kind, id, ..] = line.split_whitespace().collect::<Vec<_>>()[..]
                && !line.starts_with(' ')
                && kind.chars().all(|character| character.is_ascii_lowercase())
            {
                self.ids.insert(kind.to_owned(), id.to_owned());
            }
        }
    }

    /// `command` with every `<…>` placeholder replaced.
    fn fill(&self, command: &str) -> anyhow::Result<String> {
        let mut filled = String::new();
        let mut rest = command;
        while let Some(open) = rest.find('<') {
            let close = rest[open..].find('>').map(|close| open + close).context("an unclosed `<`")?;
            let name = &rest[open + 1..close];
            let value = match name {
                "that key" => self.key.clone(),
                "code" => self.code.clone(),
                _ => name.strip_suffix(" id").and_then(|kind| self.ids.get(kind).cloned()),
            };
            let value = value.with_context(|| format!("nothing printed so far fills <{name}>"))?;
            filled.push_str(&rest[..open]);
            filled.push_str(&value);
            rest = &rest[close + 1..];
        }
        filled.push_str(rest);
        Ok(filled)
    }
}

/// `NAME=$(COMMAND)` → (NAME, COMMAND).
fn assignment(command: &str) -> Option<(&str, &str)> {
    let (name, value) = command.split_once('=')?;
    let inner = value.strip_prefix("$(")?.strip_suffix(')')?;
    let valid = !name.is_empty()
        && name.chars().all(|character| character.is_ascii_alphanumeric() || character == '_')
        && !name.starts_with(|character: char| character.is_ascii_digit());
    valid.then_some((name, inner))
}

/// The programs a command line runs: its first word (unless the line is an assignment)
/// and the first word of every `$(…)`.
fn programs(command: &str) -> Vec<&str> {
    let first = command.split_whitespace().next().filter(|word| !word.contains('='));
    let mut found: Vec<&str> = first.into_iter().collect();
    let mut rest = command;
    while let Some(at) = rest.find("$(") {
        rest = &rest[at + 2..];
        found.extend(rest.split(|character: char| character.is_whitespace() || character == ')').next());
    }
    found
}

/// True when `program` is an executable on `PATH`.
fn installed(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path)
            .any(|dir| std::fs::metadata(dir.join(program)).is_ok_and(|meta| meta.is_file() && is_executable(&meta)))
    })
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    true
}

/// Runs README lines in a shell: `economy` is the built binary, the stack is the test's.
struct Shell<'a> {
    stack: &'a Stack,
    /// Holds the `economy` link, first on `PATH`.
    bin_dir: PathBuf,
    /// Variables set by `NAME=$(…)` lines.
    variables: BTreeMap<String, String>,
}

impl<'a> Shell<'a> {
    fn new(stack: &'a Stack) -> anyhow::Result<Self> {
        let bin_dir = std::env::temp_dir().join(format!("economy-quickstart-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&bin_dir)?;
        let binary = economy_binary()?;
        #[cfg(unix)]
        std::os::unix::fs::symlink(&binary, bin_dir.join("economy"))?;
        #[cfg(not(unix))]
        std::fs::copy(&binary, bin_dir.join(format!("economy{}", std::env::consts::EXE_SUFFIX)))?;
        Ok(Self { stack, bin_dir, variables: BTreeMap::new() })
    }

    /// `bash -c command` with the stack's endpoint and data directory, and no other
    /// inherited `ECONOMY_*` variable.
    async fn run(&self, command: &str) -> anyhow::Result<Run> {
        let mut shell = tokio::process::Command::new("bash");
        shell.arg("--noprofile").arg("--norc").arg("-c").arg(command);
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("ECONOMY_") {
                shell.env_remove(name);
            }
        }
        let path = std::env::var_os("PATH").unwrap_or_default();
        let path = std::env::join_paths([self.bin_dir.clone()].into_iter().chain(std::env::split_paths(&path)))?;
        shell
            .env("PATH", path)
            .env("ECONOMY_ENDPOINT", &self.stack.endpoint)
            .env("ECONOMY_DATA_DIR", &self.stack.data_dir)
            // Under `economy up --tls`, curl trusts its development CA (the CLI finds it itself).
            .env("CURL_CA_BUNDLE", self.stack.data_dir.join("tls").join("ca.pem"))
            .envs(&self.variables)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(COMMAND_TIMEOUT, shell.output())
            .await
            .with_context(|| format!("`{command}` timed out"))??;
        Ok(Run {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

impl Drop for Shell<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.bin_dir);
    }
}

/// Checks the banner of `economy up` against the README's `console` block.
fn check_banner(stack: &Stack, console: &Block) -> anyhow::Result<()> {
    let (command, expected) = console.lines.split_first().context("empty console block")?;
    ensure!(command.trim() == "$ cargo run -p economy -- up", "the console block should start the stack: {command}");
    let data = stack.data_dir.display().to_string();
    ensure!(expected.len() == stack.banner.len(), "banner {:?}, README {expected:?}", stack.banner);
    for (line, readme) in stack.banner.iter().zip(expected) {
        // The README's fixed ports and `./data` are the test stack's free ports and folder.
        let mut pattern = readme.replace("./data", &data);
        for port in 50051..=50064 {
            pattern = pattern.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:<port>");
        }
        ensure!(matches(&pattern, line), "banner line `{line}`, README `{readme}`");
    }
    ensure!(stack.banner[1].contains(&stack.endpoint), "the gateway line names the endpoint: {:?}", stack.banner);
    Ok(())
}

/// Runs every `sh` line of the Quickstart in order. Returns how many lines ran, were
/// expected to fail, and were skipped.
async fn run_readme(stack: &Stack, blocks: &[Block]) -> anyhow::Result<(usize, usize, Vec<String>)> {
    let mut shell = Shell::new(stack)?;
    let mut printed = Printed::default();
    let (mut ran, mut failures, mut skipped) = (0, 0, Vec::new());
    let gateway = stack.endpoint.trim_start_matches("http://").trim_start_matches("https://").to_owned();
    for line in blocks.iter().filter(|block| block.info == "sh").flat_map(|block| &block.lines) {
        let (command, comment) = split_comment(line);
        if command.is_empty() {
            continue;
        }
        if command.starts_with("economy()") {
            continue; // For a person without `cargo install`; here `economy` is the built binary.
        }
        // A URL of the README's gateway becomes the stack's, with its scheme (https under --tls).
        let command = printed
            .fill(command)?
            .replace(&format!("http://{README_GATEWAY}"), &stack.endpoint)
            .replace(README_GATEWAY, &gateway);
        let missing: Vec<&str> =
            programs(&command).into_iter().filter(|program| *program != "economy" && !installed(program)).collect();
        if !missing.is_empty() {
            let note = format!("skipped (not installed: {}): {line}", missing.join(", "));
            eprintln!("{note}");
            skipped.push(note);
            continue;
        }
        let promise = promise(comment);
        let run = match assignment(&command) {
            Some((name, inner)) => {
                let run = shell.run(inner).await?;
                shell.variables.insert(name.to_owned(), run.stdout.trim().to_owned());
                run
            }
            None => shell.run(&command).await?,
        };
        ran += 1;
        let expected_code = if promise.fails { 1 } else { 0 };
        let shown = || {
            format!(
                "README line:\n  {line}\nran:\n  {command}\nexit {:?}\nstdout:\n{}\nstderr:\n{}\nstack logs (tail):\n{}",
                run.code,
                run.stdout,
                run.stderr,
                tail(&stack.logs(), 40)
            )
        };
        ensure!(run.code == Some(expected_code), "expected exit {expected_code}\n{}", shown());
        let output = if promise.fails { &run.stderr } else { &run.stdout };
        for pattern in &promise.patterns {
            ensure!(
                output.lines().any(|printed| matches(pattern, printed)),
                "no line matches `{pattern}`\n{}",
                shown()
            );
        }
        failures += usize::from(promise.fails);
        printed.record(&run.stdout);
    }
    Ok((ran, failures, skipped))
}

/// The last `count` lines of `text`.
fn tail(text: &str, count: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(count)..].join("\n")
}

/// Journal entry headers of `history` (postings are indented).
fn entry_headers(run: &Run) -> Vec<&str> {
    run.lines().into_iter().filter(|line| !line.starts_with(' ') && !line.starts_with("next page:")).collect()
}

/// What the README does not show, on the stack it left behind.
async fn beyond_the_readme(stack: &Stack) -> anyhow::Result<()> {
    // The trades moved what the comments say: 139 - 6 and 200 - 10 to user 2.
    let diamonds = stack.ok(&["balance", "--user", "2", "--asset", "DIAMOND"]).await?;
    assert_eq!(diamonds.lines(), ["DIAMOND  available 323  frozen 0  total 323"]);
    let buyer = stack.ok(&["balance", "--user", "3", "--asset", "DIAMOND"]).await?;
    assert_eq!(buyer.lines(), ["DIAMOND  available 661  frozen 0  total 661"]);
    let shards = stack.ok(&["balance", "--user", "3", "--asset", "red_shard"]).await?;
    assert_eq!(shards.lines(), ["red_shard  available 30  frozen 0  total 30"]);
    let seller_shards = stack.ok(&["balance", "--user", "2", "--asset", "red_shard"]).await?;
    assert_eq!(seller_shards.lines(), ["red_shard  available 5  frozen 0  total 5"]);

    // An overdraft fails cleanly; validation names the field; forged tokens and bad keys
    // are refused.
    let overdraft =
        stack.run(&["transfer", "--from", "2", "--to", "3", "--asset", "POINTS", "--amount", "50000"]).await?;
    assert_eq!(overdraft.code, Some(1), "{overdraft:?}");
    assert!(overdraft.stderr.starts_with("error: FAILED_PRECONDITION INSUFFICIENT_BALANCE: "), "{}", overdraft.stderr);
    let invalid = stack.run(&["asset", "define", "9bad", "--name", "x", "--kind", "quota"]).await?;
    assert_eq!(invalid.code, Some(1), "{invalid:?}");
    assert!(invalid.stderr.contains("INVALID_ARGUMENT VALIDATION_FAILED"), "{}", invalid.stderr);
    assert!(invalid.stderr.lines().any(|line| line.starts_with("  field asset.code: ")), "{}", invalid.stderr);
    let forged = stack.run(&["--jwt-secret", "not-the-stack-secret-0123", "reconcile"]).await?;
    assert_eq!(forged.code, Some(1), "{forged:?}");
    assert!(forged.stderr.starts_with("error: UNAUTHENTICATED TOKEN_INVALID: "), "{}", forged.stderr);
    let grant = ["adjust", "--user", "2", "--asset", "POINTS", "--amount", "1", "--reason", "x"];
    let bad_key = stack.run(&[&grant[..], &["--idempotency-key", "order-42"]].concat()).await?;
    assert!(bad_key.stderr.starts_with("error: INVALID_ARGUMENT INVALID_IDEMPOTENCY_KEY: "), "{}", bad_key.stderr);

    // History pages: pages of 4 add up to the whole history, the last without a token.
    let whole = entry_headers(&stack.ok(&["history", "--user", "2"]).await?).len();
    assert!(whole > 4, "user 2 has {whole} journal entries");
    let (mut seen, mut token) = (0, String::new());
    loop {
        let mut args = vec!["history", "--user", "2", "--page-size", "4"];
        if !token.is_empty() {
            args.extend(["--page-token", token.as_str()]);
        }
        let page = stack.ok(&args).await?;
        let headers = entry_headers(&page).len();
        assert!((1..=4).contains(&headers), "{}", page.stdout);
        seen += headers;
        match page.line_starting("next page: ").and_then(|line| line.strip_prefix("next page: ")) {
            Some(next) => token = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(seen, whole);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_quickstart_runs_literally() -> anyhow::Result<()> {
    let blocks = quickstart_blocks(README)?;
    let console = blocks.iter().find(|block| block.info == "console").context("no console block (economy up)")?;
    let stack = Stack::start().await?;
    check_banner(&stack, console)?;

    let (ran, failures, skipped) = run_readme(&stack, &blocks).await?;
    assert!(ran >= 30, "only {ran} README lines ran; skipped: {skipped:?}");
    assert_eq!(failures, 1, "the README marks exactly one command as a refusal");
    assert!(
        skipped.iter().all(|note| note.contains("grpcurl")),
        "only the grpcurl example may be skipped: {skipped:?}"
    );

    beyond_the_readme(&stack).await?;
    let reconcile = stack.ok(&["reconcile"]).await?;
    let verdict = reconcile.lines();
    assert!(verdict.len() == 1 && matches("ledger is consistent (...)", verdict[0]), "{}", reconcile.stdout);

    let data_dir = stack.data_dir.clone();
    if stack.stop().await? != Some(0) {
        bail!("economy up should exit 0 on SIGTERM");
    }
    assert!(!data_dir.exists(), "the temporary data directory is removed");
    Ok(())
}

/// The same README lines against `economy up --tls`: every command, the CLI and `curl`
/// alike, reaches the gateway over TLS and trusts the stack's development CA.
#[tokio::test]
async fn the_readme_quickstart_runs_over_tls() -> anyhow::Result<()> {
    let blocks = quickstart_blocks(README)?;
    let stack = Stack::start_with(&["--tls"], &[]).await?;
    ensure!(stack.endpoint.starts_with("https://"), "economy up --tls serves https: {}", stack.endpoint);
    let (ran, failures, skipped) = run_readme(&stack, &blocks).await?;
    assert!(ran >= 30, "only {ran} README lines ran; skipped: {skipped:?}");
    assert_eq!(failures, 1, "the README marks exactly one command as a refusal");
    assert!(skipped.iter().all(|note| note.contains("grpcurl")), "only grpcurl may be skipped: {skipped:?}");
    let reconcile = stack.ok(&["reconcile"]).await?;
    assert!(matches("ledger is consistent (...)", reconcile.lines()[0]), "{}", reconcile.stdout);
    if stack.stop().await? != Some(0) {
        bail!("economy up --tls should exit 0 on SIGTERM");
    }
    Ok(())
}

#[test]
fn the_parser_reads_what_a_person_reads() -> anyhow::Result<()> {
    let readme = "# x\n## Quickstart\n```console\n$ up\n```\ntext\n```sh\na 'b # c' \\\n  d   # say → x <id> ...\n\nT=$(e f)\n```\n## Next\n```sh\nnot this\n```\n";
    let blocks = quickstart_blocks(readme)?;
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].info, "console");
    assert_eq!(blocks[1].lines, ["a 'b # c'  d   # say → x <id> ...", "", "T=$(e f)"]);
    let (command, comment) = split_comment(&blocks[1].lines[0]);
    assert_eq!(command, "a 'b # c'  d");
    assert_eq!(promise(comment), Promise { fails: false, patterns: vec!["x <id> ...".into()] });
    assert!(promise(Some("a refusal → error: X Y: ... / more")).fails);
    assert_eq!(promise(Some("just prose")), Promise::default());
    assert_eq!(assignment("T=$(e f)"), Some(("T", "e f")));
    assert_eq!(assignment("economy x"), None);
    assert_eq!(programs("grpcurl -H \"a $(economy token)\" -H \"$(uuidgen)\""), ["grpcurl", "economy", "uuidgen"]);
    assert_eq!(programs("TOKEN=$(economy token --user-id 2)"), ["economy"]);

    assert!(matches("hold <id> open 100 POINTS  account user:2", "hold 01a2 open 100 POINTS  account user:2"));
    assert!(matches("ledger is consistent (...)", "ledger is consistent (7 balances, 3 assets checked)"));
    assert!(matches("trade <id> completed  price 139 DIAMOND ...", "trade t1 completed  price 139 DIAMOND  fee 6"));
    assert!(!matches("trade <id> completed  price 139 DIAMOND ...", "trade t1 completed  price 1390 DIAMOND"));
    assert!(!matches("transaction <id>", "transaction a (replayed)"), "a pattern matches the whole line");
    assert!(!matches("item <id> consumed", "item  consumed"), "<…> is at least one character");

    let mut printed = Printed::default();
    printed.record("idempotency key: k1\nhold h1 open\n  user:2  POINTS\ncode: C-1\nhold h2 settled\n");
    assert_eq!(printed.fill("settle <hold id> <that key> <code>")?, "settle h2 k1 C-1");
    assert!(printed.fill("buy <listing id>").is_err(), "nothing printed a listing yet");
    Ok(())
}

#[test]
fn the_quickstart_section_has_the_blocks_the_test_runs() -> anyhow::Result<()> {
    let blocks = quickstart_blocks(README)?;
    let lines: Vec<&String> = blocks.iter().filter(|block| block.info == "sh").flat_map(|block| &block.lines).collect();
    assert!(lines.iter().any(|line| line.starts_with("economy() { cargo run -q -p economy -- \"$@\"; }")));
    let refusals = lines.iter().filter(|line| promise(split_comment(line).1).fails).count();
    assert_eq!(refusals, 1, "exactly one README command is marked as failing");
    assert!(Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/economy/Cargo.toml").is_file());
    Ok(())
}
