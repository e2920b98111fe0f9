//! `in` for `kind: stemcell`: the peer's files (`version`, `url`, `sha1`, `sha256`) and a verified
//! tarball named `stemcell.tgz` or, with `preserve_filename`, after the URL.

use super::catalog::{self, VariantKind};
use super::download::{self, Checksum, Options};
use crate::clients::boshio::{BoshIo, Stemcell, Variant};
use crate::config::stemcell::{GetParams, S3Auth, Source};
use crate::http::HttpClient;
use crate::protocol::{MetadataField, StepResponse, Version};
use anyhow::{Context, Result, anyhow, bail};
use std::path::Path;

/// Fetches `version` into `dir`.
pub(crate) async fn get(
    source: &Source,
    params: &GetParams,
    version: &Version,
    dir: &Path,
    boshio: &BoshIo,
    http: &HttpClient,
) -> Result<StepResponse> {
    let flavor = catalog::flavor(source)?;
    let wanted = version.get("version").ok_or_else(|| anyhow!("the requested version has no `version` key"))?;
    let stemcells = boshio.stemcells(&source.name).await?;
    let stemcell = stemcells.iter().find(|s| &s.version == wanted).ok_or_else(|| {
        let url = boshio.list_url(&source.name).map(|u| u.to_string()).unwrap_or_default();
        anyhow!("version {wanted} of {} is not listed at {url}", source.name)
    })?;
    let (kind, variant) = catalog::pick(stemcell, flavor)?;
    write_metadata_files(dir, wanted, variant)?;
    if params.tarball {
        let name = tarball_name(&variant.url, params.preserve_filename)?;
        let checksum = Checksum::for_variant(variant).ok_or_else(|| {
            anyhow!("{} publishes no checksum for {}: refusing an unverifiable download", source.api_url, variant.url)
        })?;
        let auth = source.auth.as_ref().map(S3Auth::keys);
        // The published size lets the first request ask for the right amount: no HEAD before it.
        let published_size = (variant.size > 0).then_some(variant.size);
        let options = Options { parallel: params.parallel.max(1), auth, published_size, ..Options::default() };
        download::download(http, &variant.url, &dir.join(&name), &checksum, &options).await?;
    } else {
        http.log().line("tarball: false, so only the metadata files were written");
    }
    Ok(StepResponse { version: version.clone(), metadata: metadata(stemcell, kind, variant) })
}

fn write_metadata_files(dir: &Path, version: &str, variant: &Variant) -> Result<()> {
    let text = |s: &Option<String>| s.clone().unwrap_or_default();
    for (file, content) in [
        ("version", version.to_string()),
        ("url", variant.url.clone()),
        ("sha1", text(&variant.sha1)),
        ("sha256", text(&variant.sha256)),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

fn metadata(stemcell: &Stemcell, kind: VariantKind, variant: &Variant) -> Vec<MetadataField> {
    let mut fields = vec![
        MetadataField::new("name", &stemcell.name),
        MetadataField::new("version", &stemcell.version),
        MetadataField::new("flavor", kind.name()),
        MetadataField::new("url", &variant.url),
        MetadataField::new("size", variant.size.to_string()),
    ];
    for (name, value) in [("sha256", &variant.sha256), ("sha1", &variant.sha1)] {
        fields.extend(value.as_deref().filter(|v| !v.is_empty()).map(|v| MetadataField::new(name, v)));
    }
    fields
}

/// `stemcell.tgz`, or the URL's last path segment (percent-decoded) when it is a plain file name:
/// a published URL must never make us write outside the destination directory.
pub(crate) fn tarball_name(url: &str, preserve_filename: bool) -> Result<String> {
    if !preserve_filename {
        return Ok("stemcell.tgz".to_string());
    }
    let parsed = reqwest::Url::parse(url).with_context(|| format!("the stemcell URL `{url}` is not a URL"))?;
    let segment = parsed.path_segments().and_then(|mut s| s.next_back()).unwrap_or("");
    let name = percent_decode(segment);
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == '\\' || c.is_control());
    if !plain {
        bail!(
            "preserve_filename: the stemcell URL {url} ends in `{name}`, which is not a plain file name; refusing to write it"
        );
    }
    Ok(name)
}

/// Decodes `%XX` escapes; invalid escapes and non-UTF-8 results are kept as written.
fn percent_decode(text: &str) -> String {
    let decoded = percent_encoding::percent_decode_str(text).decode_utf8();
    decoded.map(std::borrow::Cow::into_owned).unwrap_or_else(|_| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tarball_names() {
        assert_eq!(tarball_name("https://x/a/b.tgz", false).unwrap(), "stemcell.tgz");
        assert_eq!(
            tarball_name("https://x/1.9/light-bosh-stemcell-1.9.tgz?sig=1", true).unwrap(),
            "light-bosh-stemcell-1.9.tgz"
        );
        assert_eq!(tarball_name("https://x/a%20b.tgz", true).unwrap(), "a b.tgz");
        for bad in [
            "https://x/a/..%2Fx",
            "https://x/a/",
            "https://x/%2E%2E",
            "https://x/a%5Cb",
            "https://x/a%0Ab",
            "https://x",
        ] {
            let err = tarball_name(bad, true).unwrap_err().to_string();
            assert!(err.contains("not a plain file name"), "{bad}: {err}");
        }
    }
}
