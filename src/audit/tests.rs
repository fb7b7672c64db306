//! The join forced through many small sorted runs gives the same findings and summary as with
//! everything in memory, and both agree with a naive hash-map answer.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::*;

struct Data {
    stored: Vec<(String, u64)>,
    refs: Vec<(String, String, String, String)>,
}

fn data() -> Data {
    let name = |i: u64| match i % 4 {
        0 => format!("{:032x}_photo {i}.jpg", i * 2654435761),
        1 => format!("tfss-3f2504e0-4f89-11d3-9a0c-{i:012x}-pic.png"),
        2 => format!("ünï/cødé%20+{i}.bin"),
        _ => format!("plain-{i}"),
    };
    // Names 0..3000 are stored; references name 0..4000 (1000 absent), most several times.
    let stored = (0..3000u64).map(|i| (name(i), i * 10 + 1)).collect();
    let mut refs = Vec::new();
    for j in 0..6000u64 {
        let n = (j * 7919) % 4000;
        if n % 5 == 0 {
            continue; // every fifth name is referenced by nothing
        }
        let class = if j % 3 == 0 { "_User" } else { "Photo" };
        let path = match j % 4 {
            0 => "image".to_string(),
            1 => format!("gallery.{}", j % 3),
            2 => "meta.avatar".to_string(),
            _ => "thumb".to_string(),
        };
        refs.push((class.to_string(), format!("o{}", j % 1500), path, name(n)));
    }
    Data { stored, refs }
}

fn run(d: &Data, run_bytes: usize) -> (Vec<Finding>, Summary, usize) {
    let dir = tempfile::tempdir().unwrap();
    let mut a = Audit::new(&Options {
        run_bytes,
        temp_dir: dir.path().to_path_buf(),
        page_size: None,
    });
    // Fed in a scrambled order.
    for (name, size) in d.stored.iter().rev() {
        a.add_stored(name, *size, None).unwrap();
    }
    for (c, o, p, n) in &d.refs {
        a.add_reference(c, o, p, n).unwrap();
    }
    let runs = a.counts().2;
    let mut findings = Vec::new();
    let summary = a
        .finish(&mut |f| {
            findings.push(f.clone());
            Ok(())
        })
        .unwrap();
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "temp files left"
    );
    (findings, summary, runs)
}

#[test]
fn many_small_runs_match_memory_and_a_naive_join() {
    let d = data();
    let (mem_findings, mem_summary, mem_runs) = run(&d, usize::MAX);
    assert_eq!(mem_runs, 0);
    let (disk_findings, disk_summary, disk_runs) = run(&d, 4096);
    assert!(disk_runs > 2 * sort::FAN_IN, "{disk_runs} runs");
    assert_eq!(disk_findings, mem_findings);
    assert_eq!(disk_summary, mem_summary);

    // The naive answer.
    let stored: HashMap<&str, u64> = d.stored.iter().map(|(n, s)| (n.as_str(), *s)).collect();
    let referenced: HashSet<&str> = d.refs.iter().map(|r| r.3.as_str()).collect();
    let orphans: BTreeSet<&str> = stored
        .keys()
        .filter(|n| !referenced.contains(*n))
        .copied()
        .collect();
    let dangling: BTreeSet<(&str, &str, &str, &str)> = d
        .refs
        .iter()
        .filter(|r| !stored.contains_key(r.3.as_str()) && !r.3.starts_with("tfss-"))
        .map(|r| (r.0.as_str(), r.1.as_str(), r.2.as_str(), r.3.as_str()))
        .collect();
    let mut got_orphans = BTreeSet::new();
    let mut got_dangling = BTreeSet::new();
    for f in &mem_findings {
        match f {
            Finding::Orphan { name, size, .. } => {
                assert_eq!(stored[name.as_str()], *size);
                got_orphans.insert(name.as_str());
            }
            Finding::Dangling {
                class,
                object_id,
                path,
                name,
            } => {
                got_dangling.insert((
                    class.as_str(),
                    object_id.as_str(),
                    path.as_str(),
                    name.as_str(),
                ));
            }
            Finding::Superseded { .. } => panic!("no superseded here"),
        }
    }
    assert_eq!(got_orphans, orphans);
    assert_eq!(got_dangling, dangling);
    assert!(!orphans.is_empty() && !dangling.is_empty());
    let s = &mem_summary;
    assert_eq!(s.stored_files, 3000);
    assert_eq!(s.stored_bytes, stored.values().sum::<u64>());
    assert_eq!(s.orphans, orphans.len() as u64);
    assert_eq!(
        s.orphan_bytes,
        orphans.iter().map(|n| stored[n]).sum::<u64>()
    );
    assert_eq!(s.referenced_files, 3000 - orphans.len() as u64);
    assert_eq!(s.references, d.refs.len() as u64);
    assert_eq!(
        s.dangling_references,
        d.refs
            .iter()
            .filter(|r| { !stored.contains_key(r.3.as_str()) && !r.3.starts_with("tfss-") })
            .count() as u64
    );
    let legacy_unresolved = d
        .refs
        .iter()
        .filter(|r| !stored.contains_key(r.3.as_str()) && r.3.starts_with("tfss-"))
        .count() as u64;
    assert!(legacy_unresolved > 0);
    assert_eq!(s.legacy_unresolved, legacy_unresolved);
    // Shared: stored names referenced by more than one (class, object).
    let mut objects: HashMap<&str, HashSet<(&str, &str)>> = HashMap::new();
    for r in &d.refs {
        objects
            .entry(r.3.as_str())
            .or_default()
            .insert((r.0.as_str(), r.1.as_str()));
    }
    let shared = objects
        .iter()
        .filter(|(n, o)| stored.contains_key(*n) && o.len() > 1)
        .count() as u64;
    assert_eq!(s.shared_files, shared);
    // Bytes per class and field.
    let mut fields: BTreeMap<(String, String), FieldBytes> = BTreeMap::new();
    for (c, _, p, n) in &d.refs {
        let f = fields
            .entry((c.clone(), p.split('.').next().unwrap().to_string()))
            .or_default();
        f.references += 1;
        f.bytes += stored.get(n.as_str()).copied().unwrap_or(0);
    }
    assert_eq!(s.fields, fields);
}

#[test]
fn an_empty_store_and_no_references_is_clean() {
    let (findings, summary, _) = run(
        &Data {
            stored: vec![],
            refs: vec![],
        },
        1,
    );
    assert!(findings.is_empty() && summary.is_clean());
    assert_eq!(summary, Summary::default());
}

#[test]
fn keys_a_broken_generate_key_wrote_are_recognised() {
    for (key, why) in [
        ("test/undefined", Some("undefined")),
        ("undefined", Some("undefined")),
        ("uploads/[object Promise]", Some("[object Promise]")),
        ("null/abc_photo.jpg", Some("null")),
        ("a/undefined.png", Some("undefined")),
        ("2024/NaN/x.jpg", Some("NaN")),
        ("[object Object]", Some("[object Object]")),
        ("abc_undefined.png", None),
        ("nullable/x.jpg", None),
        ("photos/abc_photo.jpg", None),
        ("Undefined.jpg", None),
    ] {
        assert_eq!(super::broken_generated_key(key), why, "{key}");
    }
}
