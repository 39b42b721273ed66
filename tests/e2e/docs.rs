//! The manual's links: README.md, every `.md` under `docs/` and every
//! `examples/**/README.md`. Each relative markdown link (`[text](target)`,
//! `![alt](target)` or a reference definition `[label]: target`; not
//! `http://`, `https://` or `mailto:`) must name a file or folder that
//! exists, relative to the linking file's folder; a `#anchor` must be the
//! GitHub anchor of a heading in the target file (or in the same file, for
//! `#anchor` alone). Links inside fenced code blocks and code spans are
//! text, not links, and are not checked. Every page of the book is also in
//! its table of contents, `docs/SUMMARY.md`.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Component, Path, PathBuf};

use crate::harness::{root, Sandbox};

/// The GitHub anchor of a heading's text: inline links reduced to their
/// text, lowercased, every character that is not a letter, a digit, `-` or
/// `_` removed, and each space turned into `-` (so `Live swaps: upgrades
/// without stopping` is `live-swaps-upgrades-without-stopping`).
fn github_anchor(heading: &str) -> String {
    let text = link_texts(heading);
    let mut anchor = String::new();
    for c in text.trim().chars() {
        if c.is_alphanumeric() || c == '-' || c == '_' {
            anchor.extend(c.to_lowercase());
        } else if c == ' ' {
            anchor.push('-');
        }
    }
    anchor
}

/// `[text](target)` reduced to `text` (as a heading renders).
fn link_texts(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|i| open + i) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|i| close + i) else {
            break;
        };
        out.push_str(&rest[..open]);
        out.push_str(&rest[open + 1..close]);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// Whether `line` opens or closes a fenced code block (``` or ~~~, indented
/// by at most 3 spaces).
fn is_fence(line: &str) -> bool {
    let trimmed = line.trim_start_matches(' ');
    line.len() - trimmed.len() <= 3 && (trimmed.starts_with("```") || trimmed.starts_with("~~~"))
}

/// The text of an ATX heading (`## Text`, up to 6 `#`, closing `#`s dropped).
fn heading(line: &str) -> Option<&str> {
    let trimmed = line.trim_start_matches(' ');
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let hashes = trimmed.len() - trimmed.trim_start_matches('#').len();
    if !(1..=6).contains(&hashes) {
        return None;
    }
    let rest = &trimmed[hashes..];
    if !(rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t')) {
        return None;
    }
    Some(rest.trim().trim_end_matches('#').trim_end())
}

/// Every heading anchor of a markdown file, as GitHub numbers repeats
/// (`a`, `a-1`, `a-2`, ...). Headings inside fenced code blocks do not count.
fn anchors(markdown: &str) -> BTreeSet<String> {
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut out = BTreeSet::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if is_fence(line) {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if let Some(text) = heading(line) {
            let base = github_anchor(text);
            let n = seen.entry(base.clone()).or_insert(0);
            let anchor = if *n == 0 { base } else { format!("{base}-{n}") };
            out.insert(anchor);
            *n += 1;
        }
    }
    out
}

/// The paragraphs (runs of non-blank lines) outside fenced code blocks, each
/// with the 1-based line it starts at.
fn paragraphs(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut fenced = false;
    for (i, line) in markdown.lines().enumerate() {
        let fence = is_fence(line);
        if fence || fenced || line.trim().is_empty() {
            out.extend(current.take());
            if fence {
                fenced = !fenced;
            }
            continue;
        }
        match &mut current {
            Some((_, text)) => {
                text.push('\n');
                text.push_str(line);
            }
            None => current = Some((i + 1, line.to_string())),
        }
    }
    out.extend(current);
    out
}

/// A paragraph with its code spans blanked out (a run of n backticks up to
/// the next run of exactly n; an unmatched run is literal), line breaks kept.
fn without_code_spans(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let run_at = |i: usize| chars[i..].iter().take_while(|&&c| c == '`').count();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '`' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        let n = run_at(i);
        let mut j = i + n;
        let mut close = None;
        while j < chars.len() {
            if chars[j] == '`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(j) => {
                for &c in &chars[i..j + n] {
                    out.push(if c == '\n' { '\n' } else { ' ' });
                }
                i = j + n;
            }
            None => {
                out.extend(&chars[i..i + n]);
                i += n;
            }
        }
    }
    out
}

/// The link targets of a markdown file, with the line each is on: inline
/// links and images, and reference definitions.
fn links(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (start, paragraph) in paragraphs(markdown) {
        let text = without_code_spans(&paragraph);
        for (offset, line) in text.lines().enumerate() {
            let line_no = start + offset;
            // A reference definition: `[label]: target`.
            let trimmed = line.trim_start();
            if trimmed.starts_with('[') {
                if let Some(close) = trimmed.find("]:").filter(|&c| trimmed.find(']') == Some(c)) {
                    if let Some(target) = trimmed[close + 2..].split_whitespace().next() {
                        out.push((line_no, target.to_string()));
                    }
                }
            }
            let mut rest = line;
            while let Some(at) = rest.find("](") {
                let after = &rest[at + 2..];
                // The target runs to the `)` that balances its `(`.
                let mut depth = 0usize;
                let mut end = after.len();
                for (k, c) in after.char_indices() {
                    match c {
                        '(' => depth += 1,
                        ')' if depth == 0 => {
                            end = k;
                            break;
                        }
                        ')' => depth -= 1,
                        _ => {}
                    }
                }
                let inside = after[..end].trim();
                // `<target>` or `target "title"`.
                let target = if let Some(angled) = inside.strip_prefix('<') {
                    angled.split('>').next().unwrap_or("")
                } else {
                    inside.split_whitespace().next().unwrap_or("")
                };
                if !target.is_empty() {
                    out.push((line_no, target.to_string()));
                }
                rest = &after[end.min(after.len())..];
            }
        }
    }
    out
}

fn is_external(target: &str) -> bool {
    let lower = target.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("mailto:")
}

/// `path` with `.` and `..` resolved lexically (no symlinks followed).
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Every `.md` file under `dir`, recursively, skipping `target/` and hidden
/// folders; `only` keeps the files of that name.
fn markdown_files(dir: &Path, only: Option<&str>, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                markdown_files(&path, only, out);
            }
        } else if name.ends_with(".md") && only.is_none_or(|o| o == name) {
            out.push(path);
        }
    }
}

/// The files whose links are checked: README.md, docs/**/*.md and
/// examples/**/README.md.
fn manual() -> Vec<PathBuf> {
    let root = root();
    let mut files = vec![root.join("README.md")];
    markdown_files(&root.join("docs"), None, &mut files);
    markdown_files(&root.join("examples"), Some("README.md"), &mut files);
    files
}

/// What is wrong with each link of `file` (as `file:line: ...`), if anything.
fn broken_links(file: &Path) -> Vec<String> {
    let root = root();
    let text = fs::read_to_string(file).unwrap();
    let shown = file
        .strip_prefix(&root)
        .unwrap_or(file)
        .display()
        .to_string();
    let mut anchors_of: HashMap<PathBuf, BTreeSet<String>> = HashMap::new();
    let mut problems = Vec::new();
    for (line, target) in links(&text) {
        if is_external(&target) {
            continue;
        }
        let (path, anchor) = match target.split_once('#') {
            Some((path, anchor)) => (path, Some(anchor)),
            None => (target.as_str(), None),
        };
        let resolved = if path.is_empty() {
            file.to_path_buf()
        } else if let Some(from_root) = path.strip_prefix('/') {
            normalize(&root.join(from_root))
        } else {
            normalize(&file.parent().unwrap().join(path))
        };
        if !resolved.exists() {
            problems.push(format!(
                "{shown}:{line}: `{target}`: {} does not exist",
                resolved.display()
            ));
            continue;
        }
        let Some(anchor) = anchor else { continue };
        if resolved.extension().is_none_or(|e| e != "md") {
            problems.push(format!(
                "{shown}:{line}: `{target}`: an anchor into a file that is not markdown"
            ));
            continue;
        }
        let known = anchors_of
            .entry(resolved.clone())
            .or_insert_with(|| anchors(&fs::read_to_string(&resolved).unwrap()));
        if !known.contains(anchor) {
            problems.push(format!(
                "{shown}:{line}: `{target}`: no heading with anchor `#{anchor}` in {} (it has: {})",
                resolved.display(),
                known.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    problems
}

#[test]
fn every_relative_link_in_the_manual_resolves() {
    let files = manual();
    assert!(
        files.len() > 10,
        "expected README.md and the book, found {files:?}"
    );
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        checked += links(&fs::read_to_string(file).unwrap()).len();
        problems.extend(broken_links(file));
    }
    assert!(checked > 50, "only {checked} links found in {files:?}");
    assert!(
        problems.is_empty(),
        "{} broken links:\n{}",
        problems.len(),
        problems.join("\n")
    );
}

#[test]
fn every_page_of_the_book_is_in_its_table_of_contents() {
    let docs = root().join("docs");
    let summary = docs.join("SUMMARY.md");
    let listed: BTreeSet<PathBuf> = links(&fs::read_to_string(&summary).unwrap())
        .into_iter()
        .filter(|(_, target)| !is_external(target))
        .map(|(_, target)| normalize(&docs.join(target.split('#').next().unwrap())))
        .collect();
    let mut pages = Vec::new();
    markdown_files(&docs, None, &mut pages);
    let missing: Vec<_> = pages
        .iter()
        .filter(|page| **page != summary && !listed.contains(*page))
        .map(|page| page.strip_prefix(&docs).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "pages of docs/ missing from docs/SUMMARY.md: {missing:?}"
    );
}

#[test]
fn anchors_follow_github() {
    assert_eq!(
        github_anchor("Live swaps: upgrades without stopping"),
        "live-swaps-upgrades-without-stopping"
    );
    assert_eq!(
        github_anchor("Sources, sinks and the JSON-lines format"),
        "sources-sinks-and-the-json-lines-format"
    );
    assert_eq!(
        github_anchor("Operators in Python, JavaScript, C and Go"),
        "operators-in-python-javascript-c-and-go"
    );
    assert_eq!(github_anchor("`weir run` --fresh"), "weir-run---fresh");
    assert_eq!(github_anchor("State & timers (v2)"), "state--timers-v2");
    assert_eq!(github_anchor("See [Kafka](kafka.md)"), "see-kafka");
    assert_eq!(github_anchor("snake_case Über"), "snake_case-über");

    let md =
        "# Top\n## A\n```\n# not a heading\n```\n## A\n### Inside the host: layers ##\n#nope\n";
    assert_eq!(
        anchors(md),
        BTreeSet::from(["a", "a-1", "inside-the-host-layers", "top"].map(String::from))
    );
}

#[test]
fn links_skip_code() {
    let md = "See [a](a.md#x) and `[b](b.md)`,\n``[c](c.md)\n``, [d](<d e.md> \"t\").\n\n```\n[e](e.md)\n```\n[f]: f.md\n![g](img/g.png)\n";
    assert_eq!(
        links(md),
        vec![
            (1, "a.md#x".to_string()),
            (3, "d e.md".to_string()),
            (8, "f.md".to_string()),
            (9, "img/g.png".to_string()),
        ]
    );
}

#[test]
fn broken_links_are_named() {
    let sandbox = Sandbox::new();
    sandbox.write("book/other.md", "# Other\n\n## Some section\n");
    sandbox.write("book/folder/keep", "");
    let page = sandbox.write(
        "book/page.md",
        "# Page\n\n[ok](other.md#some-section), [self](#page), [dir](folder),\n\
         [web](https://example.com/x.md), [gone](missing.md),\n\
         [bad anchor](other.md#other-section), [bad self](#nowhere).\n",
    );
    let problems = broken_links(&page);
    assert_eq!(problems.len(), 3, "{problems:#?}");
    assert!(problems[0].contains(":4: `missing.md`"), "{problems:#?}");
    assert!(
        problems[1].contains(":5: `other.md#other-section`: no heading with anchor"),
        "{problems:#?}"
    );
    assert!(problems[2].contains("`#nowhere`"), "{problems:#?}");
}
