//! Images by ID. An image's ID is its manifest digest: what a container
//! runs, what `status` shows as `image_digest`, and what a unit is pinned
//! to so that a restart reuses the exact image it ran and a rollback goes
//! back to the one before. The image may be a reference's record, or a
//! dangling one if its tag has been pulled anew since.

use super::digest::Digest;
use super::error::Result;
use super::pull::{Progress, PullOptions};
use super::store::{Image, ImageRecord, Store, read_record};

impl Store {
    /// The record of the image whose ID is `digest`: a reference's that
    /// names it, or else the dangling one.
    pub fn record_by_digest(&self, digest: &Digest) -> Result<Option<ImageRecord>> {
        if let Some(named) = self.list()?.into_iter().find(|r| r.manifest_digest == *digest) {
            return Ok(Some(named));
        }
        read_record(&self.dangling_dir().join(format!("{}.json", digest.hex())))
    }

    /// The image whose ID is `digest`, if the store has it; an error if
    /// it is recorded but a layer is missing (see
    /// [`Store::restore_by_digest`]).
    pub fn image_by_digest(&self, digest: &Digest) -> Result<Option<Image>> {
        let Some(record) = self.record_by_digest(digest)? else { return Ok(None) };
        self.complete(record).map(Some)
    }

    /// [`Store::image_by_digest`], making missing layers from the stored
    /// blobs as [`Store::restore`] does (no source is contacted), without
    /// changing which image a reference names.
    pub fn restore_by_digest(
        &self,
        digest: &Digest,
        options: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Option<Image>> {
        let Some(record) = self.record_by_digest(digest)? else { return Ok(None) };
        self.restore_record(record, options, progress).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::super::pull::Quiet;
    use super::super::store::LayerRecord;
    use super::*;

    /// Records `reference` as an image of one uncompressed layer holding
    /// `etc/file` with `content` (owned by us: no root needed), with its
    /// blobs stored but no layer directory, as a seeded store has.
    fn seeded(store: &Store, reference: &str, content: &[u8]) -> ImageRecord {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_ustar();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        h.set_uid(nix::unistd::geteuid().as_raw().into());
        h.set_gid(nix::unistd::getegid().as_raw().into());
        b.append_data(&mut h, "etc/file", content).unwrap();
        let layer = b.into_inner().unwrap();
        let diff_id = Digest::of(&layer);
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        })
        .to_string()
        .into_bytes();
        let media_type = "application/vnd.oci.image.layer.v1.tar";
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": Digest::of(&config).to_string(), "size": config.len()},
            "layers": [{"mediaType": media_type, "digest": diff_id.to_string(), "size": layer.len()}],
        })
        .to_string()
        .into_bytes();
        for blob in [&layer, &config, &manifest] {
            store.put_blob(&Digest::of(blob), blob).unwrap();
        }
        let record = ImageRecord {
            reference: reference.into(),
            manifest_digest: Digest::of(&manifest),
            config_digest: Digest::of(&config),
            platform: "linux/amd64".into(),
            layers: vec![LayerRecord {
                digest: diff_id.clone(),
                diff_id,
                media_type: media_type.into(),
                size: layer.len() as u64,
            }],
            size: layer.len() as u64,
            pulled: 0,
        };
        store.put_record(&record).unwrap();
        record
    }

    fn file(image: &Image) -> Vec<u8> {
        image.read_file("/etc/file", 100).unwrap().unwrap()
    }

    #[test]
    fn an_image_is_found_by_its_id_after_its_tag_moved() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = seeded(&store, "r:t", b"old");
        store.restore("r:t", &PullOptions::default(), &Quiet).unwrap();
        let new = seeded(&store, "r:t", b"new");
        store.restore("r:t", &PullOptions::default(), &Quiet).unwrap();
        let id = |r: &ImageRecord| (r.reference.clone(), r.manifest_digest.clone());
        assert_eq!(store.dangling().unwrap().iter().map(id).collect::<Vec<_>>(), vec![id(&old)], "the tag moved");

        let image = store.image_by_digest(&old.manifest_digest).unwrap().expect("the dangling image");
        assert_eq!((id(&image.record), file(&image)), (id(&old), b"old".to_vec()));
        let image = store.image_by_digest(&new.manifest_digest).unwrap().expect("the tag's image");
        assert_eq!(image.record.manifest_digest, new.manifest_digest);
        assert_eq!(file(&image), b"new");
        assert!(store.image_by_digest(&Digest::of(b"never pulled")).unwrap().is_none());
    }

    #[test]
    fn a_dangling_image_is_restored_from_its_blobs_without_moving_its_tag() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let old = seeded(&store, "r:t", b"old");
        let new = seeded(&store, "r:t", b"new");
        let e = store.image_by_digest(&old.manifest_digest).unwrap_err().to_string();
        assert!(e.contains("r:t: layer") && e.contains("is missing from the store"), "{e}");

        let image = store.restore_by_digest(&old.manifest_digest, &PullOptions::default(), &Quiet).unwrap().unwrap();
        assert_eq!((file(&image), image.record), (b"old".to_vec(), old.clone()));
        assert_eq!(store.record("r:t").unwrap().map(|r| r.manifest_digest), Some(new.manifest_digest));
        assert_eq!(store.dangling().unwrap(), vec![old.clone()]);
        assert!(store.image_by_digest(&old.manifest_digest).unwrap().is_some());
        let none = store.restore_by_digest(&Digest::of(b"never pulled"), &PullOptions::default(), &Quiet).unwrap();
        assert!(none.is_none());
    }
}
