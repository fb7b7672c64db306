//! The pairing behind `relink` (and audit's count of what it would fix): each dangling reference
//! with the orphans that may hold its bytes under another key. With the S3 adapter's
//! `generateKey`, the name Parse stores can differ from the key the object was written under
//! (parse-server-s3-adapter#237, parse-server#9556): the app holds a name with no object while
//! the bytes sit, unreferenced, under a longer key.
//!
//! Only orphans are candidates (a key something references already belongs to another file).
//! A [`Rule`] gives each side its *match keys*; both sides are sorted externally by them
//! ([`super::sort`]) and merge-joined, so memory stays bounded whatever the counts:
//!
//! 1. dangling references × orphans by match key: no candidate → [`Pairing::None`]; several →
//!    [`Pairing::Several`] (the first [`LISTED`] named); exactly one → a claim on that key;
//! 2. the claims sorted by key: a key claimed by one name only → [`Pairing::One`]; by several
//!    names → [`Pairing::Claimed`] (left alone: which name owns the bytes is not knowable here).
//!
//! Read-only: this decides; `engine::relink` rewrites.

use std::borrow::Cow;
use std::io;

use serde::Serialize;

use super::Options;
use super::sort::{Record, Sorter, parts, push_part};

/// Candidate keys named in a [`Pairing::Several`].
pub const LISTED: usize = 5;

/// How a dangling name finds its key (`relink --match`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rule {
    /// A stored key that ends in `/<name>` (any directory in front: `generateKey`'s prefixes).
    Suffix,
    /// The key the template makes of the name: `{name}` is replaced (`uploads/{name}`).
    Template(String),
}

impl Rule {
    /// `suffix` or `template:T` (T holds `{name}`).
    pub fn parse(s: &str) -> Result<Rule, String> {
        match s.split_once(':') {
            None if s == "suffix" => Ok(Rule::Suffix),
            Some(("template", t)) if t.contains("{name}") && t != "{name}" => {
                Ok(Rule::Template(t.to_string()))
            }
            Some(("template", _)) => Err(
                "a template needs {name} and something around it, e.g. template:uploads/{name}"
                    .into(),
            ),
            _ => Err(format!(
                "unknown rule {s:?}: suffix, or template:T with {{name}} in T"
            )),
        }
    }

    /// The match keys an orphan's key answers to: for [`Rule::Suffix`] what follows each `/`
    /// (`a/b/c.jpg` → `b/c.jpg`, `c.jpg`); for a template, the key itself.
    fn orphan_keys<'a>(&self, key: &'a str) -> Vec<&'a str> {
        match self {
            Rule::Suffix => key
                .match_indices('/')
                .map(|(i, _)| &key[i + 1..])
                .filter(|s| !s.is_empty())
                .collect(),
            Rule::Template(_) => vec![key],
        }
    }

    /// The match key of a dangling name.
    fn dangling_key<'a>(&self, name: &'a str) -> Cow<'a, str> {
        match self {
            Rule::Suffix => Cow::Borrowed(name),
            Rule::Template(t) => Cow::Owned(t.replace("{name}", name)),
        }
    }

    /// How the summary and the plan name it.
    pub fn describe(&self) -> String {
        match self {
            Rule::Suffix => "suffix".into(),
            Rule::Template(t) => format!("template:{t}"),
        }
    }
}

/// What the pairing decided for one dangling reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pairing<'a> {
    /// Exactly one orphan answers, and no other dangling name claims it: relink to `key`.
    One { key: &'a str, size: u64 },
    /// `count` orphans answer (the first [`LISTED`] in `keys`): left alone.
    Several { keys: &'a [String], count: u64 },
    /// One orphan answers, but `names` dangling names (this one included) claim it: left alone.
    Claimed { key: &'a str, names: u64 },
    /// No orphan answers: stays dangling.
    None,
}

/// Dangling names and references by what the pairing decided.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub relinkable_names: u64,
    pub relinkable_references: u64,
    /// Several candidates, or one claimed by several names.
    pub ambiguous_names: u64,
    pub ambiguous_references: u64,
    pub unmatched_names: u64,
    pub unmatched_references: u64,
}

/// A pairing in progress: feed it the audit's orphans and dangling references, then
/// [`Pairer::finish`].
pub struct Pairer {
    rule: Rule,
    opts: Options,
    orphans: Sorter,
    dangling: Sorter,
}

/// Where a dangling reference goes, and the caller's bytes that identify it.
pub type Sink<'s> = dyn FnMut(&str, &[u8], &Pairing) -> io::Result<()> + 's;

impl Pairer {
    pub fn new(rule: Rule, opts: &Options) -> Pairer {
        Pairer {
            rule,
            opts: opts.clone(),
            orphans: Sorter::new(&opts.temp_dir, opts.run_bytes),
            dangling: Sorter::new(&opts.temp_dir, opts.run_bytes),
        }
    }

    /// An orphan (stored, referenced by nothing).
    pub fn add_orphan(&mut self, key: &str, size: u64) -> io::Result<()> {
        // The key first, so that candidates list in key order; the size in the last 8 bytes.
        let mut payload = key.as_bytes().to_vec();
        payload.extend_from_slice(&size.to_le_bytes());
        for k in self.rule.orphan_keys(key) {
            self.orphans.push(k, &payload)?;
        }
        Ok(())
    }

    /// A dangling reference to `name`; `reference` is the caller's (handed back to the sink).
    pub fn add_dangling(&mut self, name: &str, reference: &[u8]) -> io::Result<()> {
        let payload = named(name, reference);
        self.dangling.push(&self.rule.dangling_key(name), &payload)
    }

    /// Decide every dangling reference (each goes to `sink` once) and count them.
    pub fn finish(self, sink: &mut Sink<'_>) -> io::Result<Counts> {
        let mut counts = Counts::default();
        let mut claims = Sorter::new(&self.opts.temp_dir, self.opts.run_bytes);
        let mut orphans = self.orphans.finish()?.peekable();
        let mut group = Group::default();
        let mut last = Tally::default();
        for rec in self.dangling.finish()? {
            let rec = rec?;
            if group.key.as_deref() != Some(rec.key.as_str()) {
                group = Group::gather(&mut orphans, &rec.key)?;
            }
            let (name, reference) = unnamed(&rec.payload)?;
            match (group.count, group.keys.first()) {
                (1, Some(key)) => {
                    // Claim records sort before the references of their key: `C` < `R`.
                    let mut claim = b"C".to_vec();
                    claim.extend_from_slice(name.as_bytes());
                    claims.push(key, &claim)?;
                    let mut r = b"R".to_vec();
                    r.extend_from_slice(&group.size.to_le_bytes());
                    r.extend_from_slice(&rec.payload);
                    claims.push(key, &r)?;
                }
                (0, _) => {
                    last.count(name, &mut counts.unmatched_names);
                    counts.unmatched_references += 1;
                    sink(name, reference, &Pairing::None)?;
                }
                (count, _) => {
                    last.count(name, &mut counts.ambiguous_names);
                    counts.ambiguous_references += 1;
                    let keys = &group.keys;
                    sink(name, reference, &Pairing::Several { keys, count })?;
                }
            }
        }
        drop(orphans);

        // 2. Each claimed key: its claims (distinct names) first, then its references.
        let mut key = String::new();
        let mut names = 0u64;
        let mut last_claim = String::new();
        let mut last = Tally::default();
        for rec in claims.finish()? {
            let Record { key: k, payload } = rec?;
            if k != key {
                key = k;
                names = 0;
                last_claim.clear();
            }
            match payload.split_first() {
                Some((b'C', name)) => {
                    let name = std::str::from_utf8(name).map_err(|_| bad())?;
                    if names == 0 || name != last_claim {
                        names += 1;
                        last_claim = name.to_string();
                    }
                }
                Some((b'R', rest)) => {
                    let size = u64::from_le_bytes(
                        rest.get(..8)
                            .ok_or_else(bad)?
                            .try_into()
                            .map_err(|_| bad())?,
                    );
                    let (name, reference) = unnamed(&rest[8..])?;
                    let pairing = if names == 1 {
                        last.count(name, &mut counts.relinkable_names);
                        counts.relinkable_references += 1;
                        Pairing::One { key: &key, size }
                    } else {
                        last.count(name, &mut counts.ambiguous_names);
                        counts.ambiguous_references += 1;
                        Pairing::Claimed { key: &key, names }
                    };
                    sink(name, reference, &pairing)?;
                }
                _ => return Err(bad()),
            }
        }
        Ok(counts)
    }
}

/// The orphans answering one match key: how many, the first [`LISTED`], the size of the first.
#[derive(Default)]
struct Group {
    key: Option<String>,
    count: u64,
    keys: Vec<String>,
    size: u64,
}

impl Group {
    /// Skip the orphans before `key`, then gather those of `key`.
    fn gather(
        orphans: &mut std::iter::Peekable<super::sort::Sorted>,
        key: &str,
    ) -> io::Result<Group> {
        let mut g = Group {
            key: Some(key.to_string()),
            ..Group::default()
        };
        loop {
            match orphans.peek() {
                Some(Ok(r)) if r.key.as_str() < key => {}
                Some(Ok(r)) if r.key == key => {
                    let p = &r.payload;
                    let at = p.len().checked_sub(8).ok_or_else(bad)?;
                    let size = u64::from_le_bytes(p[at..].try_into().map_err(|_| bad())?);
                    let stored = std::str::from_utf8(&p[..at]).map_err(|_| bad())?;
                    // The same orphan twice under one match key (a store listing it twice).
                    if g.keys.last().map(String::as_str) != Some(stored) {
                        if g.count == 0 {
                            g.size = size;
                        }
                        g.count += 1;
                        if g.keys.len() < LISTED {
                            g.keys.push(stored.to_string());
                        }
                    }
                }
                Some(Ok(_)) | None => return Ok(g),
                Some(Err(_)) => {
                    return match orphans.next() {
                        Some(Err(e)) => Err(e),
                        _ => Ok(g),
                    };
                }
            }
            orphans.next();
        }
    }
}

/// Counts a name once across its consecutive references.
#[derive(Default)]
struct Tally {
    name: Option<String>,
}

impl Tally {
    fn count(&mut self, name: &str, counter: &mut u64) {
        if self.name.as_deref() != Some(name) {
            *counter += 1;
            self.name = Some(name.to_string());
        }
    }
}

fn named(name: &str, reference: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(4 + name.len() + reference.len());
    push_part(&mut p, name);
    p.extend_from_slice(reference);
    p
}

fn unnamed(p: &[u8]) -> io::Result<(&str, &[u8])> {
    let ([name], rest) = parts::<1>(p)?;
    Ok((name, rest))
}

fn bad() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, "bad relink record")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Every decision by name: the naive answer (maps) against the sorted join, in memory and
    /// through many small runs on disk.
    fn pair(
        rule: Rule,
        orphans: &[&str],
        dangling: &[(&str, &str)],
        run_bytes: usize,
    ) -> Decisions {
        let opts = Options {
            run_bytes,
            ..Options::default()
        };
        let mut p = Pairer::new(rule, &opts);
        for o in orphans {
            p.add_orphan(o, o.len() as u64).unwrap();
        }
        for (name, r) in dangling {
            p.add_dangling(name, r.as_bytes()).unwrap();
        }
        let mut out = BTreeMap::new();
        let counts = p
            .finish(&mut |name, r, pairing| {
                let d = match pairing {
                    Pairing::One { key, size } => {
                        assert_eq!(*size, key.len() as u64);
                        format!("one {key}")
                    }
                    Pairing::Several { keys, count } => format!("several {count} {keys:?}"),
                    Pairing::Claimed { key, names } => format!("claimed {key} by {names}"),
                    Pairing::None => "none".into(),
                };
                let was = out.insert(
                    String::from_utf8(r.to_vec()).unwrap(),
                    (name.to_string(), d),
                );
                assert!(was.is_none(), "each reference decided once");
                Ok(())
            })
            .unwrap();
        (out, counts)
    }

    type Decisions = (BTreeMap<String, (String, String)>, Counts);

    #[test]
    fn suffixes_pair_one_candidate_and_leave_several_or_shared_ones_alone() {
        let orphans = [
            "test/a_photo.jpg", // the only key ending in /a_photo.jpg
            "undefined/b.png",  // b.png: two candidates
            "x/b.png",
            "p/q/shared.txt",   // claimed by shared.txt and q/shared.txt
            "tenant/dir/c.gif", // a name with a directory: dir/c.gif
            "lonely.bin",       // no directory: answers to nothing
        ];
        let dangling = [
            ("a_photo.jpg", "r1"),
            ("a_photo.jpg", "r2"),
            ("b.png", "r3"),
            ("shared.txt", "r4"),
            ("q/shared.txt", "r5"),
            ("dir/c.gif", "r6"),
            ("nothing.jpg", "r7"),
            ("lonely.bin", "r8"),
        ];
        for run_bytes in [usize::MAX, 64] {
            let (d, counts) = pair(Rule::Suffix, &orphans, &dangling, run_bytes);
            let got = |r: &str| d[r].1.clone();
            assert_eq!(got("r1"), "one test/a_photo.jpg");
            assert_eq!(got("r2"), "one test/a_photo.jpg");
            assert_eq!(got("r3"), "several 2 [\"undefined/b.png\", \"x/b.png\"]");
            assert_eq!(got("r4"), "claimed p/q/shared.txt by 2");
            assert_eq!(got("r5"), "claimed p/q/shared.txt by 2");
            assert_eq!(got("r6"), "one tenant/dir/c.gif");
            assert_eq!(got("r7"), "none");
            assert_eq!(got("r8"), "none");
            assert_eq!(d["r5"].0, "q/shared.txt");
            assert_eq!(
                counts,
                Counts {
                    relinkable_names: 2,
                    relinkable_references: 3,
                    ambiguous_names: 3,
                    ambiguous_references: 3,
                    unmatched_names: 2,
                    unmatched_references: 2,
                }
            );
        }
    }

    #[test]
    fn a_template_names_exactly_one_key() {
        let rule = Rule::parse("template:uploads/{name}").unwrap();
        let orphans = ["uploads/a.jpg", "other/b.jpg", "uploads/x/b.jpg"];
        let dangling = [("a.jpg", "r1"), ("b.jpg", "r2"), ("x/b.jpg", "r3")];
        let (d, counts) = pair(rule, &orphans, &dangling, usize::MAX);
        assert_eq!(d["r1"].1, "one uploads/a.jpg");
        assert_eq!(d["r2"].1, "none");
        assert_eq!(d["r3"].1, "one uploads/x/b.jpg");
        assert_eq!(counts.relinkable_names, 2);
        assert_eq!(counts.unmatched_references, 1);
    }

    #[test]
    fn rules_parse_or_say_why_not() {
        assert_eq!(Rule::parse("suffix"), Ok(Rule::Suffix));
        assert!(Rule::parse("template:{name}").is_err());
        assert!(Rule::parse("template:dir/x").is_err());
        assert!(Rule::parse("prefix").is_err());
        assert_eq!(
            Rule::parse("template:a/{name}").unwrap().describe(),
            "template:a/{name}"
        );
    }

    /// Many names, many runs: the sorted answer equals a naive one built with maps.
    #[test]
    fn the_join_agrees_with_a_naive_answer_through_many_runs() {
        let mut orphans = std::collections::BTreeSet::new();
        let mut dangling = Vec::new();
        for i in 0..600u32 {
            let name = format!("n{:03}.jpg", i % 300);
            match i % 6 {
                0 => {
                    orphans.insert(format!("gen/{name}"));
                }
                1 => {
                    orphans.insert(format!("d{}/{name}", i % 4));
                }
                _ => {}
            }
            if i % 2 == 0 {
                dangling.push((name, format!("ref{i}")));
            }
        }
        let o: Vec<&str> = orphans.iter().map(String::as_str).collect();
        let d: Vec<(&str, &str)> = dangling
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let (small, _) = pair(Rule::Suffix, &o, &d, 128);
        let (big, counts) = pair(Rule::Suffix, &o, &d, usize::MAX);
        assert_eq!(small, big);
        // Naive: candidates per name.
        let mut cands: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        let names: std::collections::BTreeSet<&str> = d.iter().map(|(n, _)| *n).collect();
        for name in names {
            for k in &o {
                if k.ends_with(&format!("/{name}")) {
                    cands.entry(name).or_default().push(k);
                }
            }
        }
        for (name, r) in &d {
            let want = match cands.get(name).map(Vec::len).unwrap_or(0) {
                0 => "none".to_string(),
                1 => format!("one {}", cands[name][0]),
                n => format!("several {n}"),
            };
            assert!(
                big[*r].1.starts_with(&want),
                "{name}: {} vs {want}",
                big[*r].1
            );
        }
        assert_eq!(
            counts.relinkable_references
                + counts.ambiguous_references
                + counts.unmatched_references,
            d.len() as u64
        );
    }
}
