//! `load`: the images of an archive (an OCI archive, or `docker save`
//! output) into the store, under the names the archive gives them or one
//! the operator gives, with every check a pull makes (the archive is as
//! untrusted as a registry). An archive sent over the control socket is
//! received into the store's `tmp/` first, as an [`Upload`]: on the store's
//! filesystem, checked for room before a byte is written, and removed
//! whatever happens (by its drop, or by the next sweep after a crash).

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::error::{ImageError, Result};
use super::pull::{Progress, PullOptions};
use super::source::{archive_contents, archive_fetcher};
use super::space::Budget;
use super::store::{Image, Lock, Store, unique_name};
use crate::names::reference::ImageRef;

/// An archive being received into the store's `tmp/`. The store lock is
/// held (shared) while it exists, so that no sweep removes it meanwhile;
/// the file goes when this is dropped.
pub struct Upload {
    store: Store,
    path: PathBuf,
    file: File,
    _lock: Lock,
}

impl Upload {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file to write the archive into.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The error of a failed write into the file: a full filesystem's
    /// names the store and its mount point.
    pub fn write_error(&self, e: std::io::Error) -> ImageError {
        self.store.no_space(ImageError::io("write", &self.path)(e))
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The reference an image is recorded under for `name`, as units name it.
/// An error text for a name that is not an image name with a tag (a
/// loaded image is named by tag); the client and the control socket check
/// `--name` with it before an archive is sent.
pub fn loaded_reference(name: &str) -> std::result::Result<String, String> {
    let r = ImageRef::parse(name).map_err(|e| format!("image name {e}"))?;
    if r.digest.is_some() {
        return Err(format!("{name:?}: a loaded image is named by a tag (NAME:TAG), not a digest"));
    }
    Ok(r.to_string())
}

/// [`loaded_reference`], its error naming the archive.
fn reference(name: &str, archive: &Path) -> Result<String> {
    loaded_reference(name).map_err(|m| ImageError::Invalid(format!("{}: {m}", archive.display())))
}

impl Store {
    /// A file in the store's `tmp/` for an archive of `size` bytes, once
    /// the store's filesystem has room for it above the pulls' reserve.
    pub fn upload(&self, size: u64) -> Result<Upload> {
        let lock = self.lock_store(false)?;
        let tmp = self.tmp_dir();
        Budget::new("the archive", u64::MAX, &tmp).check_space(size).map_err(|detail| ImageError::NoSpace {
            store: self.root().to_path_buf(),
            mount: super::space::mount_point(self.root()),
            detail,
        })?;
        let path = tmp.join(unique_name("load") + ".tar");
        let file = File::options().write(true).create_new(true).open(&path).map_err(ImageError::io("create", &path))?;
        Ok(Upload { store: self.clone(), path, file, _lock: lock })
    }

    /// Stores the images of the archive at `archive`: each under every
    /// name it carries, or, with `name`, its only image under that name.
    /// An image without a name (and no `name` given) is an error before
    /// anything is stored, as is `name` for an archive of several images.
    pub fn load(
        &self,
        archive: &Path,
        name: Option<&str>,
        options: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Vec<Image>> {
        let contents = archive_contents(archive)?;
        let invalid = |m: String| ImageError::Invalid(format!("{}: {m}", archive.display()));
        // (the reference to record, the name that picks the image in the archive)
        let mut plan: Vec<(String, Option<&str>)> = Vec::new();
        match name {
            Some(name) => {
                if contents.images.len() != 1 {
                    let names: Vec<&str> = contents.images.iter().flatten().map(String::as_str).collect();
                    return Err(invalid(format!(
                        "holds {} images ({}); a name given names the one image of an archive",
                        contents.images.len(),
                        if names.is_empty() { "none named".to_string() } else { names.join(", ") }
                    )));
                }
                plan.push((reference(name, archive)?, None));
            }
            None => {
                if contents.images.is_empty() {
                    return Err(invalid("holds no image".into()));
                }
                for (i, names) in contents.images.iter().enumerate() {
                    if names.is_empty() {
                        return Err(invalid(format!(
                            "image {} of {} has no name (RepoTags, or org.opencontainers.image.ref.name NAME:TAG): give it one with --name",
                            i + 1,
                            contents.images.len()
                        )));
                    }
                    for n in names {
                        plan.push((reference(n, archive)?, Some(n)));
                    }
                }
            }
        }
        let mut images = Vec::new();
        for (reference, pick) in plan {
            let fetcher = archive_fetcher(archive, contents.format, pick)?;
            images.push(self.pull_from(&reference, &*fetcher, options, progress)?);
        }
        Ok(images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::image::Quiet;
    use crate::runtime::image::source::ArchiveFormat;

    /// A tar at `dir/name` holding `entries` (path, content).
    fn tar(dir: &Path, name: &str, entries: &[(&str, &str)]) -> PathBuf {
        let path = dir.join(name);
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        for (p, content) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(content.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, p, content.as_bytes()).unwrap();
        }
        b.finish().unwrap();
        path
    }

    const M: &str = "sha256:ce1b4dafd94101053cb93b132c30150cdbafa56c60b545d334c2eabd4b86b8c0";

    fn oci_index(names: &[Option<&str>]) -> String {
        let manifests: Vec<serde_json::Value> = names
            .iter()
            .map(|n| {
                let mut d = serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": M, "size": 1});
                if let Some(n) = n {
                    d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": n});
                }
                d
            })
            .collect();
        serde_json::json!({"schemaVersion": 2, "manifests": manifests}).to_string()
    }

    #[test]
    fn names_come_from_repo_tags_and_full_oci_ref_names() {
        let dir = tempfile::tempdir().unwrap();
        let saved = r#"[{"Config":"c.json","RepoTags":["example.com/a:v1","a:v2"],"Layers":[]},{"Config":"d.json","Layers":[]}]"#;
        let docker = tar(dir.path(), "d.tar", &[("manifest.json", saved)]);
        let contents = archive_contents(&docker).unwrap();
        assert_eq!(contents.format, ArchiveFormat::Docker);
        assert_eq!(contents.images, vec![vec!["example.com/a:v1".to_string(), "a:v2".into()], vec![]]);
        // A bare tag (skopeo's oci-archive:FILE:TAG) names no image.
        let index = oci_index(&[Some("v1"), Some("example.com/b:v3"), None]);
        let oci = tar(dir.path(), "o.tar", &[("oci-layout", "{}"), ("index.json", &index)]);
        let contents = archive_contents(&oci).unwrap();
        assert_eq!(contents.format, ArchiveFormat::Oci);
        assert_eq!(contents.images, vec![vec![], vec!["example.com/b:v3".to_string()], vec![]]);
        let neither = tar(dir.path(), "n.tar", &[("hello.txt", "hi")]);
        assert_eq!(
            archive_contents(&neither).unwrap_err().to_string(),
            format!(
                "{}: neither an oci-archive (no index.json) nor a docker-archive (no manifest.json)",
                neither.display()
            )
        );
    }

    #[test]
    fn an_image_without_a_name_or_a_name_for_several_is_refused_before_anything_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state")).unwrap();
        let (options, quiet) = (PullOptions::default(), Quiet);
        let unnamed = tar(dir.path(), "u.tar", &[("index.json", &oci_index(&[Some("latest")]))]);
        let e = store.load(&unnamed, None, &options, &quiet).err().unwrap().to_string();
        assert_eq!(
            e,
            format!(
                "{}: image 1 of 1 has no name (RepoTags, or org.opencontainers.image.ref.name NAME:TAG): give it one with --name",
                unnamed.display()
            )
        );
        let two = tar(dir.path(), "t.tar", &[("index.json", &oci_index(&[Some("x.io/a:1"), Some("x.io/b:1")]))]);
        let e = store.load(&two, Some("app:v1"), &options, &quiet).err().unwrap().to_string();
        assert_eq!(
            e,
            format!(
                "{}: holds 2 images (x.io/a:1, x.io/b:1); a name given names the one image of an archive",
                two.display()
            )
        );
        let one = tar(dir.path(), "one.tar", &[("index.json", &oci_index(&[None]))]);
        let e = store.load(&one, Some("app@sha256:0000"), &options, &quiet).err().unwrap().to_string();
        assert!(e.starts_with(&format!("{}: image name ", one.display())), "{e}");
        let empty = tar(dir.path(), "e.tar", &[("index.json", &oci_index(&[]))]);
        let e = store.load(&empty, None, &options, &quiet).err().unwrap().to_string();
        assert_eq!(e, format!("{}: holds no image", empty.display()));
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn an_upload_is_removed_when_dropped_and_refused_when_the_disk_has_no_room() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let upload = store.upload(10).unwrap();
        let path = upload.path().to_path_buf();
        assert!(path.starts_with(store.root().join("tmp")) && path.is_file());
        drop(upload);
        assert!(!path.exists());
        let e = store.upload(u64::MAX / 2).err().unwrap();
        assert!(matches!(e, ImageError::NoSpace { .. }), "{e}");
        assert!(e.to_string().starts_with("no space left on the filesystem of"), "{e}");
    }
}
