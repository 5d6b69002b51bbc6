//! Which image of a slot's store goes next when the store is over its
//! budget (IMAGE_STORE_MAX_GB). Pure: it reads the inner Podman's image
//! list (`podman images -a --format json`) and decides; the job runs the
//! commands.
//!
//! Order: dangling images of superseded PR builds first (the job prunes
//! them with `podman image prune` before asking here), then the least
//! recently used image (our own last-use record, else its creation time).
//! Never removed: the images the running job uses and their ancestors (its
//! cache layers), images a container uses, and the host's images (read-only
//! through `additionalimagestores`). Only leaves are candidates: Podman
//! refuses to remove an image with children, and a parent becomes a leaf
//! once its children are gone.

use std::collections::{HashMap, HashSet};

use serde::Deserialize;
use thiserror::Error;

use super::store::LastUsed;

#[derive(Debug, Error)]
#[error("cannot read the image list of the slot's store: {0}")]
pub struct ImageListError(#[from] serde_json::Error);

/// One image as the inner `podman images -a --format json` shows it.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct StoredImage {
    #[serde(rename = "Id")]
    pub id: String,
    #[serde(rename = "ParentId", default)]
    pub parent: String,
    #[serde(rename = "Names", default)]
    pub names: Option<Vec<String>>,
    #[serde(rename = "Created", default)]
    pub created: i64,
    #[serde(rename = "ReadOnly", default)]
    pub read_only: bool,
    #[serde(rename = "Containers", default)]
    pub containers: u64,
}

impl StoredImage {
    pub fn names(&self) -> &[String] {
        self.names.as_deref().unwrap_or_default()
    }

    /// The tag if any, else the short id: what a log reader recognises.
    pub fn label(&self) -> String {
        match self.names().first() {
            Some(name) => format!("{name} ({})", short_id(&self.id)),
            None => short_id(&self.id).to_string(),
        }
    }
}

pub fn parse_image_list(json: &str) -> Result<Vec<StoredImage>, ImageListError> {
    // Podman prints nothing at all (not `[]`) for an empty store.
    if json.trim().is_empty() {
        return Ok(Vec::new());
    }
    Ok(serde_json::from_str(json)?)
}

/// The images named in `in_use` (by tag) and all their ancestors.
pub fn in_use_with_ancestors(images: &[StoredImage], in_use: &[&str]) -> HashSet<String> {
    let by_id: HashMap<&str, &StoredImage> = images.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut kept = HashSet::new();
    let mut pending: Vec<&StoredImage> = images
        .iter()
        .filter(|image| image.names().iter().any(|n| in_use.contains(&n.as_str())))
        .collect();
    while let Some(image) = pending.pop() {
        if kept.insert(image.id.clone()) {
            if let Some(parent) = by_id.get(image.parent.as_str()) {
                pending.push(parent);
            }
        }
    }
    kept
}

/// The next image to remove, if any may go.
pub fn next_to_evict<'a>(
    images: &'a [StoredImage],
    protected: &HashSet<String>,
    last_used: &LastUsed,
) -> Option<&'a StoredImage> {
    let parents: HashSet<&str> = images.iter().map(|i| i.parent.as_str()).collect();
    images
        .iter()
        .filter(|image| {
            !image.read_only
                && image.containers == 0
                && !protected.contains(&image.id)
                && !parents.contains(image.id.as_str())
        })
        .min_by_key(|image| {
            let used = last_used.get(&image.id).copied().unwrap_or(image.created);
            (used, image.created, image.id.clone())
        })
}

pub fn short_id(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(id: &str, parent: &str, names: &[&str], created: i64) -> StoredImage {
        StoredImage {
            id: id.into(),
            parent: parent.into(),
            names: (!names.is_empty()).then(|| names.iter().map(|n| n.to_string()).collect()),
            created,
            read_only: false,
            containers: 0,
        }
    }

    /// base (host) <- deps <- pr129 (tagged slot0) ; deps <- pr130 (tagged old) ; other
    fn store() -> Vec<StoredImage> {
        let mut base = image("base", "", &["localhost/debian:bookworm"], 1);
        base.read_only = true;
        vec![
            base,
            image("deps", "base", &[], 10),
            image("pr129", "deps", &["localhost/ember-csi-job:slot0"], 20),
            image("pr130", "deps", &["localhost/old:tag"], 15),
            image("other", "base", &["localhost/vendor-tool:1"], 5),
        ]
    }

    #[test]
    fn podman_json_is_read() {
        let json = r#"[{"Id":"abc","ParentId":"","Names":["localhost/x:1"],"Created":7,
            "ReadOnly":true,"Containers":2,"Size":1,"Dangling":false},
            {"Id":"def","RepoTags":null,"Created":8}]"#;
        let images = parse_image_list(json).expect("valid list");
        assert_eq!(images[0].names(), ["localhost/x:1"]);
        assert!(images[0].read_only);
        assert_eq!(images[0].containers, 2);
        assert_eq!(images[1].names(), [] as [String; 0]);
        assert_eq!(images[1].parent, "");
        assert!(parse_image_list("").expect("empty store").is_empty());
        assert!(parse_image_list("not json").is_err());
    }

    #[test]
    fn the_running_jobs_image_and_its_cache_layers_are_protected() {
        let images = store();
        let kept = in_use_with_ancestors(&images, &["localhost/ember-csi-job:slot0"]);
        assert_eq!(kept, ["pr129", "deps", "base"].map(String::from).into());
    }

    #[test]
    fn least_recently_used_leaf_goes_first() {
        let images = store();
        let kept = in_use_with_ancestors(&images, &["localhost/ember-csi-job:slot0"]);
        // By creation time: "other" (5) before "pr130" (15).
        let first = next_to_evict(&images, &kept, &LastUsed::new()).expect("a candidate");
        assert_eq!(first.id, "other");
        // A recent use keeps "other" longer than "pr130".
        let used: LastUsed = [("other".to_string(), 100)].into();
        let first = next_to_evict(&images, &kept, &used).expect("a candidate");
        assert_eq!(first.id, "pr130");
        assert_eq!(first.label(), "localhost/old:tag (pr130)");
    }

    #[test]
    fn parents_read_only_and_busy_images_are_never_candidates() {
        let mut images = store();
        let nothing = HashSet::new();
        images.retain(|i| i.id != "other");
        images[3].containers = 1; // pr130 runs a container
        let next = next_to_evict(&images, &nothing, &LastUsed::new()).expect("a candidate");
        assert_eq!(next.id, "pr129", "deps has children, base is read-only");
        let all: HashSet<String> = images.iter().map(|i| i.id.clone()).collect();
        assert_eq!(next_to_evict(&images, &all, &LastUsed::new()), None);
    }
}
