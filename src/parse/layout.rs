//! `relayout --template`: the new name of a file, made from a template with its old name, the
//! class and field of the reference that decides it, and that object's creation date —
//! Parse Server 9.4's per-file directories (`Parse.File.setDirectory`, prepended to the name)
//! laid out after the fact.
//!
//! Placeholders: `{name}` (the current name, required: it keeps new names unique), `{class}`,
//! `{field}` (the File field, or Parse Config's parameter), `{yyyy}` `{mm}` `{dd}` (UTC, of the
//! object's `createdAt`), `{hash2}` (two hex digits of the name's SHA-256, for fan-out). Anything
//! else is literal. The result must be a name Parse Server serves: no empty, `.` or `..`
//! segment, no leading `/`.

use sha2::{Digest, Sha256};

/// A checked template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    template: String,
    dated: bool,
}

/// What the deciding reference tells the template.
#[derive(Debug, Clone, Default)]
pub struct Facts<'a> {
    pub class: &'a str,
    pub field: &'a str,
    /// `createdAt` in ms since the epoch, when the template needs it.
    pub created_ms: Option<i64>,
}

const PLACEHOLDERS: [&str; 7] = [
    "{name}", "{class}", "{field}", "{yyyy}", "{mm}", "{dd}", "{hash2}",
];

impl Layout {
    pub fn parse(template: &str) -> Result<Layout, String> {
        if template.matches("{name}").count() != 1 {
            return Err("the template must hold {name} once (new names must stay unique)".into());
        }
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            let tail = &rest[open..];
            match PLACEHOLDERS.iter().find(|p| tail.starts_with(**p)) {
                Some(p) => rest = &tail[p.len()..],
                None => {
                    return Err(format!(
                        "unknown placeholder at {tail:?}: use {}",
                        PLACEHOLDERS.join(" ")
                    ));
                }
            }
        }
        if template.starts_with('/') {
            return Err("the template must not start with /".into());
        }
        let dated = ["{yyyy}", "{mm}", "{dd}"]
            .iter()
            .any(|p| template.contains(p));
        Ok(Layout {
            template: template.to_string(),
            dated,
        })
    }

    /// The template as given.
    pub fn as_str(&self) -> &str {
        &self.template
    }

    /// Whether it needs the object's `createdAt`.
    pub fn dated(&self) -> bool {
        self.dated
    }

    /// Whether `name` already has this layout's shape for these facts: some name `base` renders
    /// to it (a file laid out by an earlier run, or uploaded into that directory). Such a name is
    /// kept, never laid out twice.
    pub fn holds(&self, name: &str, facts: &Facts) -> bool {
        let Some((pre, post)) = self.template.split_once("{name}") else {
            return false;
        };
        let (Ok(pre), Ok(post)) = (self.fill(pre, facts), self.fill(post, facts)) else {
            return false;
        };
        // `{hash2}` is left in `pre`/`post`: it stands for two hex digits, of the base name.
        let width = |t: &str| t.replace("{hash2}", "hh").len();
        let (a, b) = (width(&pre), width(&post));
        if name.len() < a + b + 1
            || !name.is_char_boundary(a)
            || !name.is_char_boundary(name.len() - b)
        {
            return false;
        }
        let base = &name[a..name.len() - b];
        let hash = hex::encode(&Sha256::digest(base.as_bytes())[..1]);
        let want = format!(
            "{}{base}{}",
            pre.replace("{hash2}", &hash),
            post.replace("{hash2}", &hash)
        );
        want == name
    }

    /// `part` of the template with every placeholder but `{name}` and `{hash2}` filled.
    fn fill(&self, part: &str, facts: &Facts) -> Result<String, String> {
        let mut out = part.to_string();
        if ["{yyyy}", "{mm}", "{dd}"].iter().any(|p| part.contains(p)) {
            let ms = facts
                .created_ms
                .ok_or("the object has no createdAt for {yyyy}/{mm}/{dd}")?;
            let (y, m, d) = civil(ms.div_euclid(86_400_000));
            out = out
                .replace("{yyyy}", &format!("{y:04}"))
                .replace("{mm}", &format!("{m:02}"))
                .replace("{dd}", &format!("{d:02}"));
        }
        Ok(out
            .replace("{class}", facts.class)
            .replace("{field}", facts.field))
    }

    /// The new name of `name`; `Err` with the reason when the facts do not make one.
    pub fn render(&self, name: &str, facts: &Facts) -> Result<String, String> {
        let mut out = self.template.clone();
        if self.dated {
            let ms = facts
                .created_ms
                .ok_or("the object has no createdAt for {yyyy}/{mm}/{dd}")?;
            let (y, m, d) = civil(ms.div_euclid(86_400_000));
            out = out
                .replace("{yyyy}", &format!("{y:04}"))
                .replace("{mm}", &format!("{m:02}"))
                .replace("{dd}", &format!("{d:02}"));
        }
        let hash = hex::encode(&Sha256::digest(name.as_bytes())[..1]);
        let out = out
            .replace("{class}", facts.class)
            .replace("{field}", facts.field)
            .replace("{hash2}", &hash)
            .replace("{name}", name);
        if out
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
        {
            return Err(format!(
                "the new name {out:?} has an empty, . or .. segment"
            ));
        }
        Ok(out)
    }
}

/// The UTC date of day `days` since 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_render_and_refuse_what_parse_server_would_not_serve() {
        let l = Layout::parse("{class}/{yyyy}/{mm}/{name}").unwrap();
        assert!(l.dated());
        let facts = Facts {
            class: "Photo",
            field: "image",
            created_ms: Some(1_700_000_000_000), // 2023-11-14
        };
        assert_eq!(
            l.render("a b.jpg", &facts).unwrap(),
            "Photo/2023/11/a b.jpg"
        );
        let undated = Facts {
            created_ms: None,
            ..facts.clone()
        };
        assert!(l.render("a.jpg", &undated).is_err());

        let h = Layout::parse("{hash2}/{field}-{name}").unwrap();
        let n = h.render("x.jpg", &facts).unwrap();
        assert_eq!(n.len(), "00/image-x.jpg".len(), "{n}");
        assert_eq!(n, h.render("x.jpg", &facts).unwrap(), "stable");

        assert!(Layout::parse("{class}/x.jpg").is_err(), "no {{name}}");
        assert!(Layout::parse("{nope}/{name}").is_err());
        assert!(Layout::parse("/{name}").is_err());
        let empty = Facts { class: "", ..facts };
        assert!(
            Layout::parse("{class}/{name}")
                .unwrap()
                .render("a", &empty)
                .is_err()
        );
        assert!(
            Layout::parse("../{name}")
                .unwrap()
                .render("a", &empty)
                .is_err()
        );
        assert!(Layout::parse("{name}/{name}").is_err());
    }

    #[test]
    fn a_name_already_laid_out_is_recognised() {
        let facts = Facts {
            class: "Photo",
            field: "image",
            created_ms: Some(1_700_000_000_000),
        };
        for t in [
            "{class}/{name}",
            "{hash2}/{class}-{yyyy}/{name}.x",
            "{name}",
        ] {
            let l = Layout::parse(t).unwrap();
            let once = l.render("a b.jpg", &facts).unwrap();
            assert!(l.holds(&once, &facts), "{t}: {once}");
            assert!(!l.holds("a b.jpg", &facts) || t == "{name}", "{t}");
        }
        let l = Layout::parse("{hash2}/{name}").unwrap();
        assert!(!l.holds("zz/a.jpg", &facts), "not the hash of a.jpg");
        let other = Facts {
            class: "User",
            ..facts
        };
        assert!(
            !Layout::parse("{class}/{name}")
                .unwrap()
                .holds("Photo/a.jpg", &other)
        );
    }

    #[test]
    fn dates_are_the_utc_calendar() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_675), (2023, 11, 14));
        assert_eq!(civil(11_016), (2000, 2, 29));
        assert_eq!(civil(-1), (1969, 12, 31));
    }
}
