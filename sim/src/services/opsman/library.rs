//! Ops Manager's stemcell library: the multipart import (`POST /api/v0/stemcells`), the diagnostic report that
//! lists what is there, and assigning stemcells to tiles through `stemcell_associations` (Ops Manager 2.6 and
//! later) or `stemcell_assignments` (docs/facts/opsman.md).
//!
//! No tarball is kept or read: an import is identified by the file name bosh.io gives it
//! (`[light-]bosh-stemcell-VERSION-NAME.tgz`), where the real Ops Manager reads the tarball's `stemcell.MF`. The
//! file part is streamed and only counted, so a 1 GiB import costs the simulator no memory.

use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, body::Bytes};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{OpsMan, Product, World, errors};

/// One stemcell of the library, or one staged on or deployed with a tile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Stemcell {
    /// The bosh.io name, e.g. `bosh-vsphere-esxi-ubuntu-jammy-go_agent`.
    pub(super) name: String,
    pub(super) os: String,
    pub(super) version: String,
}

impl Stemcell {
    /// From `name/version`.
    pub(super) fn from_spec(spec: &str) -> Option<Self> {
        let (name, version) = spec.rsplit_once('/')?;
        Some(Stemcell { name: name.into(), os: os_of(name)?, version: version.into() })
    }

    /// From the file name bosh.io publishes it under: `[light-]bosh-stemcell-VERSION-NAME.tgz`, where NAME may
    /// or may not repeat the leading `bosh-`.
    fn from_file_name(file: &str) -> Option<Self> {
        let rest = file.strip_prefix("light-").unwrap_or(file).strip_prefix("bosh-stemcell-")?.strip_suffix(".tgz")?;
        let (version, name) = rest.split_once('-')?;
        if version.is_empty() || !version.chars().all(|c| c.is_ascii_digit() || c == '.') {
            return None;
        }
        let name = if name.starts_with("bosh-") { name.to_owned() } else { format!("bosh-{name}") };
        Some(Stemcell { os: os_of(&name)?, name, version: version.into() })
    }

    pub(super) fn file_name(&self) -> String {
        format!("bosh-stemcell-{}-{}.tgz", self.version, self.name.trim_start_matches("bosh-"))
    }

    pub(super) fn os_version(&self) -> String {
        format!("{}/{}", self.os, self.version)
    }

    fn short_json(&self) -> Value {
        json!({"name": self.name, "os": self.os, "version": self.version})
    }

    fn report_json(&self) -> Value {
        json!({"filename": self.file_name(), "os": self.os, "version": self.version})
    }
}

/// The operating system in a bosh.io stemcell name (`…-ubuntu-jammy-go_agent` → `ubuntu-jammy`,
/// `…-windows2019-go_agent` → `windows2019`); what `stemcell.MF` would say.
fn os_of(name: &str) -> Option<String> {
    let parts: Vec<&str> = name.trim_end_matches("-go_agent").split('-').collect();
    let at = parts.iter().position(|p| ["ubuntu", "centos", "windows"].iter().any(|f| p.starts_with(f)))?;
    match parts[at] {
        family @ ("ubuntu" | "centos") => parts.get(at + 1).map(|release| format!("{family}-{release}")),
        windows => Some(windows.to_owned()),
    }
}

/// `POST /api/v0/stemcells`: `stemcell[file]` (streamed, counted) and `stemcell[floating]` (default `true`: the
/// new stemcell floats onto every tile that uses its operating system within the same major line).
pub(super) async fn upload(State(ops): State<Arc<OpsMan>>, headers: HeaderMap, multipart: Multipart) -> Response {
    if let Err(denied) = ops.auth(&headers) {
        return denied;
    }
    let form = match read_form(multipart).await {
        Ok(form) => form,
        Err(message) => return errors(StatusCode::BAD_REQUEST, &[message]),
    };
    let Some((file, size)) = form.file.filter(|(_, size)| *size > 0) else {
        return errors(StatusCode::UNPROCESSABLE_ENTITY, &["stemcell[file] is required".into()]);
    };
    let Some(stemcell) = Stemcell::from_file_name(&file) else {
        let message = format!("{file} ({size} bytes) is not a valid stemcell: its stemcell.MF cannot be read");
        return errors(StatusCode::UNPROCESSABLE_ENTITY, &[message]);
    };
    let mut world = ops.lock_world();
    let existing = world.library.contains(&stemcell);
    if !existing {
        world.library.push(stemcell.clone());
        ops.counters.add("opsman.stemcell_imports", 1);
    }
    if form.floating {
        float(&mut world.products, &stemcell);
    }
    let answer = json!({"stemcell": {"infrastructure": ops.config.infrastructure_type, "hypervisor": "esxi",
        "os": stemcell.os, "version": stemcell.version, "file": file, "name": stemcell.name}, "existing": existing});
    Json(answer).into_response()
}

/// What the form held: the file part's name and size, and the floating flag.
struct Form {
    file: Option<(String, u64)>,
    floating: bool,
}

async fn read_form(mut multipart: Multipart) -> Result<Form, String> {
    let mut form = Form { file: None, floating: true };
    let broken = |e: axum::extract::multipart::MultipartError| format!("reading the upload: {e}");
    while let Some(mut field) = multipart.next_field().await.map_err(broken)? {
        match field.name() {
            Some("stemcell[file]") => {
                let name = field.file_name().unwrap_or_default().to_owned();
                let mut size = 0u64;
                while let Some(chunk) = field.chunk().await.map_err(broken)? {
                    size += chunk.len() as u64;
                }
                form.file = Some((name, size));
            }
            Some("stemcell[floating]") => form.floating = field.text().await.map_err(broken)?.trim() != "false",
            _ => while field.chunk().await.map_err(broken)?.is_some() {},
        }
    }
    Ok(form)
}

/// Floating stemcells move within a major line only (1.505 → 1.506, never → 2.1) onto tiles using that OS.
fn float(products: &mut [Product], stemcell: &Stemcell) {
    let major = |v: &str| v.split('.').next().unwrap_or("").to_owned();
    for product in products {
        for staged in product.staged.iter_mut().filter(|s| s.os == stemcell.os) {
            if major(&staged.version) == major(&stemcell.version)
                && crate::shared::compare_versions(&stemcell.version, &staged.version).is_gt()
            {
                *staged = stemcell.clone();
            }
        }
    }
}

/// `GET /api/v0/diagnostic_report`, in the shape of the reported version: `available_stemcells` and per-product
/// `stemcells` from 2.6 on, `stemcells` as file names and per-product `stemcell` before.
pub(super) async fn diagnostic_report(State(ops): State<Arc<OpsMan>>, headers: HeaderMap) -> Response {
    if let Err(denied) = ops.auth(&headers) {
        return denied;
    }
    let world = ops.lock_world();
    let modern = ops.at_least(2, 6);
    let product = |p: &Product, version: &str, stemcells: &[Stemcell]| {
        let mut entry = json!({"name": p.kind, "version": version});
        if modern {
            entry["stemcells"] = stemcells.iter().map(Stemcell::report_json).collect();
        } else if let Some(first) = stemcells.first() {
            entry["stemcell"] = first.file_name().into();
        }
        entry
    };
    let deployed: Vec<Value> = world
        .products
        .iter()
        .filter_map(|p| p.deployed_version.as_deref().map(|v| product(p, v, &p.deployed)))
        .collect();
    let staged: Vec<Value> = world.products.iter().map(|p| product(p, &p.staged_version, &p.staged)).collect();
    let mut report = json!({"infrastructure_type": ops.config.infrastructure_type,
                            "added_products": {"deployed": deployed, "staged": staged}});
    if modern {
        report["available_stemcells"] = world.library.iter().map(Stemcell::report_json).collect();
    } else {
        report["stemcells"] = world.library.iter().map(Stemcell::file_name).collect();
    }
    Json(report).into_response()
}

/// `GET /api/v0/stemcell_associations` (Ops Manager 2.6 and later).
pub(super) async fn associations(State(ops): State<Arc<OpsMan>>, headers: HeaderMap) -> Response {
    if let Some(refused) = refuse_associations(&ops, &headers) {
        return refused;
    }
    let world = ops.lock_world();
    let products: Vec<Value> = tiles(&world).map(|p| association_json(p, &world.library)).collect();
    let library: Vec<Value> = world
        .library
        .iter()
        .map(|s| {
            json!({"version": s.version, "os": s.os, "name": s.name, "infrastructure": ops.config.infrastructure_type,
                        "hypervisor": "esxi", "light": false, "present_on_disk": true})
        })
        .collect();
    Json(json!({"products": products, "stemcell_library": library})).into_response()
}

/// Tiles that take stemcells: every one but the director's.
fn tiles(world: &World) -> impl Iterator<Item = &Product> {
    world.products.iter().filter(|p| p.kind != super::DIRECTOR)
}

fn association_json(p: &Product, library: &[Stemcell]) -> Value {
    let oses = p.required_oses();
    let available: Vec<Value> = library.iter().filter(|s| oses.contains(&s.os)).map(Stemcell::short_json).collect();
    let required: Vec<Value> = oses
        .iter()
        .map(|os| {
            let minimum = p.deployed.iter().chain(&p.staged).find(|s| &s.os == os).map_or("", |s| s.version.as_str());
            json!({"os": os, "version": minimum, "enable_patch_security_updates": true})
        })
        .collect();
    json!({"guid": p.guid, "identifier": p.kind, "label": super::label(&p.kind),
           "staged_product_version": p.staged_version, "deployed_product_version": p.deployed_version,
           "is_staged_for_deletion": false,
           "staged_stemcells": p.staged.iter().map(Stemcell::short_json).collect::<Vec<_>>(),
           "deployed_stemcells": p.deployed.iter().map(Stemcell::short_json).collect::<Vec<_>>(),
           "available_stemcells": available, "required_stemcells": required})
}

/// Auth, then 404 on an Ops Manager older than 2.6, which has no such route.
fn refuse_associations(ops: &OpsMan, headers: &HeaderMap) -> Option<Response> {
    if let Err(denied) = ops.auth(headers) {
        return Some(denied);
    }
    (!ops.at_least(2, 6)).then(|| errors(StatusCode::NOT_FOUND, &["Not Found".into()]))
}

#[derive(Deserialize)]
struct AssociationsPatch {
    products: Vec<ProductStemcells>,
}

#[derive(Deserialize)]
struct ProductStemcells {
    guid: String,
    staged_stemcells: Vec<OsVersion>,
}

#[derive(Deserialize)]
struct OsVersion {
    os: String,
    version: String,
}

/// `PATCH /api/v0/stemcell_associations`: per product, the named stemcells replace the staged ones of their
/// operating systems (the route cannot unassign). Each must be in the library and of an OS the tile uses.
pub(super) async fn associate(State(ops): State<Arc<OpsMan>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = refuse_associations(&ops, &headers) {
        return refused;
    }
    let patch: AssociationsPatch = match serde_json::from_slice(&body) {
        Ok(patch) => patch,
        Err(e) => return errors(StatusCode::UNPROCESSABLE_ENTITY, &[format!("invalid request: {e}")]),
    };
    let mut world = ops.lock_world();
    for change in &patch.products {
        let mut picked = Vec::new();
        for wanted in &change.staged_stemcells {
            match world.library.iter().find(|s| s.os == wanted.os && s.version == wanted.version) {
                Some(found) => picked.push(found.clone()),
                None => {
                    let message = format!("Stemcell {} {} is not in the stemcell library", wanted.os, wanted.version);
                    return errors(StatusCode::UNPROCESSABLE_ENTITY, &[message]);
                }
            }
        }
        if let Err(refused) = stage(&mut world, &change.guid, &picked) {
            return refused;
        }
    }
    Json(json!({})).into_response()
}

/// Stages `picked` on the product `guid`, replacing its staged stemcells of the same operating systems.
#[allow(clippy::result_large_err)] // the refusal is the handler's response
fn stage(world: &mut World, guid: &str, picked: &[Stemcell]) -> Result<(), Response> {
    let Some(product) = world.products.iter_mut().find(|p| p.guid == guid && p.kind != super::DIRECTOR) else {
        return Err(errors(StatusCode::UNPROCESSABLE_ENTITY, &[format!("Product {guid} not found")]));
    };
    let oses = product.required_oses();
    if let Some(foreign) = picked.iter().find(|s| !oses.contains(&s.os)) {
        let message = format!("{} does not use {} stemcells (it uses: {})", product.kind, foreign.os, oses.join(", "));
        return Err(errors(StatusCode::UNPROCESSABLE_ENTITY, &[message]));
    }
    product.staged.retain(|s| !picked.iter().any(|p| p.os == s.os));
    product.staged.extend(picked.iter().cloned());
    Ok(())
}

/// `GET /api/v0/stemcell_assignments`: one staged stemcell version per tile (the pre-2.6 model).
pub(super) async fn assignments(State(ops): State<Arc<OpsMan>>, headers: HeaderMap) -> Response {
    if let Err(denied) = ops.auth(&headers) {
        return denied;
    }
    let world = ops.lock_world();
    let products: Vec<Value> = tiles(&world)
        .map(|p| {
            let os = p.required_oses().into_iter().next().unwrap_or_default();
            let mut available: Vec<&str> =
                world.library.iter().filter(|s| s.os == os).map(|s| s.version.as_str()).collect();
            available.sort_by(|a, b| crate::shared::compare_versions(a, b));
            let staged = p.staged.iter().find(|s| s.os == os).map(|s| s.version.clone());
            let required = p.deployed.iter().find(|s| s.os == os).map(|s| s.version.clone());
            json!({"guid": p.guid, "identifier": p.kind, "is_staged_for_deletion": false,
                   "staged_stemcell_version": staged, "required_stemcell_version": required,
                   "available_stemcell_versions": available})
        })
        .collect();
    Json(json!({ "products": products })).into_response()
}

#[derive(Deserialize)]
struct AssignmentsPatch {
    products: Vec<ProductVersion>,
}

#[derive(Deserialize)]
struct ProductVersion {
    guid: String,
    staged_stemcell_version: String,
}

/// `PATCH /api/v0/stemcell_assignments`: the version must be one the library has for the tile's OS.
pub(super) async fn assign(State(ops): State<Arc<OpsMan>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(denied) = ops.auth(&headers) {
        return denied;
    }
    let patch: AssignmentsPatch = match serde_json::from_slice(&body) {
        Ok(patch) => patch,
        Err(e) => return errors(StatusCode::UNPROCESSABLE_ENTITY, &[format!("invalid request: {e}")]),
    };
    let mut world = ops.lock_world();
    for change in &patch.products {
        let os =
            world.products.iter().find(|p| p.guid == change.guid).and_then(|p| p.required_oses().into_iter().next());
        let found =
            world.library.iter().find(|s| Some(&s.os) == os.as_ref() && s.version == change.staged_stemcell_version);
        let Some(found) = found.cloned() else {
            let message =
                format!("Stemcell version {} is not available for {}", change.staged_stemcell_version, change.guid);
            return errors(StatusCode::UNPROCESSABLE_ENTITY, &[message]);
        };
        if let Err(refused) = stage(&mut world, &change.guid, &[found]) {
            return refused;
        }
    }
    Json(json!({})).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bosh_io_file_names_identify_stemcells() {
        let s = Stemcell::from_file_name("bosh-stemcell-1.506-vsphere-esxi-ubuntu-jammy-go_agent.tgz").unwrap();
        assert_eq!(
            (s.name.as_str(), s.os.as_str(), s.version.as_str()),
            ("bosh-vsphere-esxi-ubuntu-jammy-go_agent", "ubuntu-jammy", "1.506")
        );
        let light =
            Stemcell::from_file_name("light-bosh-stemcell-3263.8-aws-xen-hvm-ubuntu-trusty-go_agent.tgz").unwrap();
        assert_eq!(light.os_version(), "ubuntu-trusty/3263.8");
        let repeated =
            Stemcell::from_file_name("bosh-stemcell-2019.86-bosh-vsphere-esxi-windows2019-go_agent.tgz").unwrap();
        assert_eq!(repeated.os_version(), "windows2019/2019.86");
        assert_eq!(repeated.file_name(), "bosh-stemcell-2019.86-vsphere-esxi-windows2019-go_agent.tgz");
        for bad in
            ["stemcell.tgz", "bosh-stemcell-x-vsphere-esxi-ubuntu-jammy-go_agent.tgz", "bosh-stemcell-1.5-vsphere.tgz"]
        {
            assert!(Stemcell::from_file_name(bad).is_none(), "{bad}");
        }
        assert_eq!(os_of("bosh-google-kvm-centos-7-go_agent").as_deref(), Some("centos-7"));
    }
}
