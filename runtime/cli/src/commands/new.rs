use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

/// Create a transform project in any supported language, ready to build and test.
///
/// The project has the transform source, a fixture (tests/events.jsonl), the output the
/// transform must make of it (tests/expected.jsonl) and a README with the two commands
/// that build it with the SDK's build script and check it with `wrt test`.
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  \
    wrt new masker --lang python && cd masker\n  \
    <wrt clone>/sdk/python/build . masker.wasm\n  \
    wrt test masker.wasm --events tests/events.jsonl --expect tests/expected.jsonl")]
pub struct New {
    /// The project's name and folder: letters, digits, `-` and `_`, starting with a letter.
    name: String,

    /// The transform's language.
    #[arg(long, value_enum)]
    lang: Lang,

    /// The folder to create (default: ./<name>). It must not exist or be empty.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,

    /// The wrt SDK folder (sdk/ of a wrt clone) the project builds against.
    #[arg(long, env = "WRT_SDK", value_name = "DIR", default_value = default_sdk())]
    sdk: PathBuf,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Lang {
    Rust,
    Js,
    Python,
    Go,
    C,
}

impl Lang {
    fn id(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
            Lang::Go => "go",
            Lang::C => "c",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Js => "JavaScript",
            Lang::Python => "Python",
            Lang::Go => "Go",
            Lang::C => "C",
        }
    }

    /// The template's files: path in the project, contents with `{{...}}` placeholders.
    fn files(self) -> &'static [(&'static str, &'static str)] {
        macro_rules! template {
            ($($path:literal),+) => {
                &[$(($path, include_str!(concat!("../../../../sdk/templates/", $path)))),+]
            };
        }
        match self {
            Lang::Rust => template!("rust/Cargo.toml", "rust/src/lib.rs"),
            Lang::Js => template!("js/transform.js"),
            Lang::Python => template!("python/transform.py"),
            Lang::Go => template!("go/transform.go"),
            Lang::C => template!("c/transform.c"),
        }
    }
}

/// Shared by every language: each template makes the same output of the same fixture.
const COMMON: &[(&str, &str)] = &[
    (
        "README.md",
        include_str!("../../../../sdk/templates/README.md"),
    ),
    (
        "tests/events.jsonl",
        include_str!("../../../../sdk/templates/tests/events.jsonl"),
    ),
    (
        "tests/expected.jsonl",
        include_str!("../../../../sdk/templates/tests/expected.jsonl"),
    ),
];

/// The SDK of the clone this binary was built from.
fn default_sdk() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk")
}

impl New {
    pub fn run(self) -> anyhow::Result<ExitCode> {
        validate_name(&self.name)?;
        let dir = self
            .dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(&self.name));
        refuse_non_empty(&dir)?;
        let sdk = std::fs::canonicalize(&self.sdk).unwrap_or_default();
        anyhow::ensure!(
            sdk.join(self.lang.id()).join("build").is_file(),
            "--sdk {}: no {}/build script there; point --sdk (or WRT_SDK) at the sdk/ folder of a wrt clone",
            self.sdk.display(),
            self.lang.id()
        );
        let lang_prefix = format!("{}/", self.lang.id());
        let files = self
            .lang
            .files()
            .iter()
            .map(|(path, text)| (path.strip_prefix(&lang_prefix).unwrap_or(path), *text));
        for (path, template) in files.chain(COMMON.iter().copied()) {
            let text = template
                .replace("{{name}}", &self.name)
                .replace("{{lang}}", self.lang.id())
                .replace("{{language}}", self.lang.title())
                .replace("{{sdk}}", &sdk.to_string_lossy());
            let target = dir.join(path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("creating {}", parent.display()))?;
            }
            std::fs::write(&target, text)
                .with_context(|| format!("writing {}", target.display()))?;
        }
        println!(
            "created {} ({}); build and test it:\n  cd {}\n  {}/{}/build . {}.wasm\n  \
             wrt test {}.wasm --events tests/events.jsonl --expect tests/expected.jsonl",
            dir.display(),
            self.lang.id(),
            dir.display(),
            sdk.display(),
            self.lang.id(),
            self.name,
            self.name
        );
        Ok(ExitCode::SUCCESS)
    }
}

fn validate_name(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    anyhow::ensure!(
        ok,
        "invalid project name {name:?}: use letters, digits, `-` and `_`, starting with a letter \
         (it names the folder, the package and the component)"
    );
    Ok(())
}

fn refuse_non_empty(dir: &Path) -> anyhow::Result<()> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => anyhow::ensure!(
            entries.next().is_none(),
            "{} already exists and is not empty; choose another name or --dir",
            dir.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("checking {}", dir.display())),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["masker", "pii-mask", "a_1"] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1x", "-x", "a b", "a/b", "é"] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains("invalid project name"), "{bad}: {err}");
        }
    }

    #[test]
    fn non_empty_folders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(refuse_non_empty(&dir.path().join("new")).is_ok());
        assert!(refuse_non_empty(dir.path()).is_ok());
        std::fs::write(dir.path().join("x"), "").unwrap();
        let err = refuse_non_empty(dir.path()).unwrap_err().to_string();
        assert!(err.contains("already exists and is not empty"), "{err}");
    }
}
