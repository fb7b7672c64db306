//! `provider`: what each S3-compatible service needs, so an operator names the service instead of
//! guessing five client settings. [`S3Config::resolved`] fills every key the table leaves unset
//! from the provider's preset (an explicit key always wins) and refuses combinations the service
//! rejects; settings resolution applies it once, so `--show-settings` prints the effective values.
//!
//! Why these presets: since early 2025 the AWS SDKs send flexible checksums (`x-amz-checksum-*`,
//! `x-amz-sdk-checksum-algorithm`) on every upload by default. AWS and MinIO implement them;
//! Cloudflare R2 answered `501 NotImplemented: Header 'x-amz-checksum-crc32'` (aws-sdk-js-v3#6810,
//! cloudflare-docs#19236 — the documented fix is `WHEN_REQUIRED`), and R2 also rejects a CRC32
//! beside a `Content-MD5` (vector#23029); B2, Spaces and Wasabi users hit the same class of
//! failures. So every provider but `aws` and `minio` computes and validates checksums only where
//! the API requires them; integrity is still checked — the tool compares the MD5 it computes on
//! the stream with the single-part ETag, and the size, after every upload.

use serde::{Deserialize, Serialize};

use super::{ChecksumMode, S3Config};

/// The service behind an S3 store table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Amazon S3: the SDK's defaults (virtual-hosted addressing, flexible checksums, ACLs).
    Aws,
    /// Cloudflare R2: `endpoint = "https://<account id>.r2.cloudflarestorage.com"`, region `auto`.
    R2,
    /// Backblaze B2: `https://s3.<region>.backblazeb2.com`.
    B2,
    /// DigitalOcean Spaces: `https://<region>.digitaloceanspaces.com`.
    Spaces,
    /// MinIO (self-hosted): your `endpoint`, path-style.
    Minio,
    /// Wasabi: `https://s3.<region>.wasabisys.com`.
    Wasabi,
    /// Any other S3-compatible server: your `endpoint`, path-style, checksums only when required.
    Other,
}

/// One provider's preset.
struct Preset {
    /// The endpoint for a region (`None`: the table must give one, unless AWS).
    endpoint: fn(&str) -> Option<String>,
    /// Whether an endpoint (or a region to derive it from) is required.
    needs_endpoint: bool,
    default_region: Option<&'static str>,
    path_style: bool,
    checksums: ChecksumMode,
    /// Per-object canned ACLs (`acl`) are honoured.
    acls: bool,
    /// What to do instead of `acl` when not.
    acl_instead: &'static str,
}

fn preset(p: Provider) -> Preset {
    let none = |_: &str| None;
    match p {
        Provider::Aws => Preset {
            endpoint: none,
            needs_endpoint: false,
            default_region: None,
            path_style: false,
            checksums: ChecksumMode::WhenSupported,
            acls: true,
            acl_instead: "",
        },
        Provider::R2 => Preset {
            endpoint: none,
            needs_endpoint: true,
            default_region: Some("auto"),
            path_style: true,
            checksums: ChecksumMode::WhenRequired,
            acls: false,
            acl_instead: "R2 has no object ACLs: make the bucket public (r2.dev or a custom domain) \
                          and set parse.file_url_template",
        },
        Provider::B2 => Preset {
            endpoint: |r| Some(format!("https://s3.{r}.backblazeb2.com")),
            needs_endpoint: true,
            default_region: None,
            path_style: false,
            checksums: ChecksumMode::WhenRequired,
            acls: false,
            acl_instead: "B2 sets visibility per bucket: make the bucket public instead",
        },
        Provider::Spaces => Preset {
            endpoint: |r| Some(format!("https://{r}.digitaloceanspaces.com")),
            needs_endpoint: true,
            default_region: None,
            path_style: false,
            checksums: ChecksumMode::WhenRequired,
            acls: true,
            acl_instead: "",
        },
        Provider::Minio => Preset {
            endpoint: none,
            needs_endpoint: true,
            default_region: None,
            path_style: true,
            checksums: ChecksumMode::WhenSupported,
            acls: false,
            acl_instead: "MinIO ignores object ACLs: grant access with a bucket policy \
                          (`mc anonymous set download`) instead",
        },
        Provider::Wasabi => Preset {
            endpoint: |r| Some(format!("https://s3.{r}.wasabisys.com")),
            needs_endpoint: true,
            default_region: Some("us-east-1"),
            path_style: false,
            checksums: ChecksumMode::WhenRequired,
            acls: true,
            acl_instead: "",
        },
        Provider::Other => Preset {
            endpoint: none,
            needs_endpoint: true,
            default_region: None,
            path_style: true,
            checksums: ChecksumMode::WhenRequired,
            acls: true,
            acl_instead: "",
        },
    }
}

impl S3Config {
    /// The table with the provider's preset applied to every key it leaves unset (see the module
    /// documentation); unchanged without `provider`. Errors name the key to set.
    pub fn resolved(&self) -> Result<S3Config, String> {
        let Some(provider) = self.provider else {
            return Ok(self.clone());
        };
        let p = preset(provider);
        let name = serde_json::to_value(provider)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let mut c = self.clone();
        if c.region.is_none() {
            c.region = p.default_region.map(str::to_string);
        }
        if c.endpoint.is_none() {
            c.endpoint = c.region.as_deref().and_then(p.endpoint);
        }
        if p.needs_endpoint && c.endpoint.is_none() {
            let example = match provider {
                Provider::R2 => "endpoint = \"https://<account id>.r2.cloudflarestorage.com\"",
                Provider::B2 | Provider::Spaces | Provider::Wasabi => {
                    "region = \"<the bucket's region>\" (the endpoint is derived from it), or endpoint"
                }
                _ => "endpoint = \"https://s3.example.com\"",
            };
            return Err(format!("provider = \"{name}\" needs {example}"));
        }
        c.force_path_style = c.force_path_style.or(Some(p.path_style));
        c.request_checksum_calculation = c.request_checksum_calculation.or(Some(p.checksums));
        c.response_checksum_validation = c.response_checksum_validation.or(Some(p.checksums));
        if c.acl.is_some() && !p.acls {
            return Err(format!(
                "provider = \"{name}\" does not accept `acl` on objects; {}",
                p.acl_instead
            ));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(provider: Provider) -> S3Config {
        S3Config {
            bucket: "b".into(),
            provider: Some(provider),
            ..Default::default()
        }
    }

    #[test]
    fn without_a_provider_nothing_changes() {
        let c = S3Config {
            bucket: "b".into(),
            ..Default::default()
        };
        let r = c.resolved().unwrap();
        assert_eq!(r.endpoint, None);
        assert_eq!(r.force_path_style, None);
        assert_eq!(r.request_checksum_calculation, None);
    }

    #[test]
    fn each_provider_resolves_endpoint_style_and_checksums() {
        use ChecksumMode::*;
        let with = |p: Provider, f: fn(&mut S3Config)| {
            let mut c = table(p);
            f(&mut c);
            c.resolved()
        };
        let aws = with(Provider::Aws, |_| {}).unwrap();
        assert_eq!(
            (
                aws.endpoint,
                aws.force_path_style,
                aws.request_checksum_calculation
            ),
            (None, Some(false), Some(WhenSupported))
        );
        let r2 = with(Provider::R2, |c| {
            c.endpoint = Some("https://acc.r2.cloudflarestorage.com".into())
        })
        .unwrap();
        assert_eq!(r2.region.as_deref(), Some("auto"));
        assert_eq!(r2.request_checksum_calculation, Some(WhenRequired));
        assert_eq!(r2.response_checksum_validation, Some(WhenRequired));
        let b2 = with(Provider::B2, |c| c.region = Some("us-west-004".into())).unwrap();
        assert_eq!(
            b2.endpoint.as_deref(),
            Some("https://s3.us-west-004.backblazeb2.com")
        );
        let spaces = with(Provider::Spaces, |c| c.region = Some("nyc3".into())).unwrap();
        assert_eq!(
            spaces.endpoint.as_deref(),
            Some("https://nyc3.digitaloceanspaces.com")
        );
        assert_eq!(spaces.force_path_style, Some(false));
        let wasabi = with(Provider::Wasabi, |_| {}).unwrap();
        assert_eq!(
            wasabi.endpoint.as_deref(),
            Some("https://s3.us-east-1.wasabisys.com")
        );
        let minio = with(Provider::Minio, |c| {
            c.endpoint = Some("http://m:9000".into())
        })
        .unwrap();
        assert_eq!(
            (minio.force_path_style, minio.request_checksum_calculation),
            (Some(true), Some(WhenSupported))
        );
        let other = with(Provider::Other, |c| c.endpoint = Some("http://o".into())).unwrap();
        assert_eq!(other.request_checksum_calculation, Some(WhenRequired));
    }

    #[test]
    fn explicit_keys_win() {
        let mut c = table(Provider::R2);
        c.endpoint = Some("https://acc.r2.cloudflarestorage.com".into());
        c.request_checksum_calculation = Some(ChecksumMode::WhenSupported);
        c.force_path_style = Some(false);
        c.region = Some("weur".into());
        let r = c.resolved().unwrap();
        assert_eq!(
            r.request_checksum_calculation,
            Some(ChecksumMode::WhenSupported)
        );
        assert_eq!(
            r.response_checksum_validation,
            Some(ChecksumMode::WhenRequired)
        );
        assert_eq!(r.force_path_style, Some(false));
        assert_eq!(r.region.as_deref(), Some("weur"));
        let mut b2 = table(Provider::B2);
        b2.region = Some("eu-central-003".into());
        b2.endpoint = Some("https://proxy.example".into());
        assert_eq!(
            b2.resolved().unwrap().endpoint.as_deref(),
            Some("https://proxy.example")
        );
    }

    #[test]
    fn what_a_provider_cannot_do_is_refused_with_the_fix() {
        let e = table(Provider::R2).resolved().unwrap_err();
        assert!(e.contains("r2.cloudflarestorage.com"), "{e}");
        let e = table(Provider::B2).resolved().unwrap_err();
        assert!(e.contains("region"), "{e}");
        let e = table(Provider::Minio).resolved().unwrap_err();
        assert!(e.contains("endpoint"), "{e}");
        let mut c = table(Provider::R2);
        c.endpoint = Some("https://acc.r2.cloudflarestorage.com".into());
        c.acl = Some("public-read".into());
        let e = c.resolved().unwrap_err();
        assert!(
            e.contains("does not accept `acl`") && e.contains("public"),
            "{e}"
        );
        let mut c = table(Provider::Spaces);
        c.region = Some("ams3".into());
        c.acl = Some("public-read".into());
        assert!(c.resolved().is_ok(), "Spaces honours public-read");
    }
}
