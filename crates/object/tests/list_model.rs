//! Listing checked against a model: for random key sets, prefixes, delimiters and page
//! sizes, paging through `list_objects` yields exactly what S3's rules say, each entry
//! once, in UTF-8 binary order, and never panics. The same for `list_bucket_versions`
//! over random version histories (null versions, versions, delete markers): the pages,
//! followed through their key and version markers, concatenate to the model's listing.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bucketdb_object::{ListQuery, VersionPage, Versioning};
use common::*;
use proptest::prelude::*;

/// What one full listing must return: (objects, common prefixes), each sorted.
fn model(keys: &BTreeSet<String>, prefix: &str, delimiter: Option<&str>) -> Vec<String> {
    let mut out = BTreeSet::new();
    for k in keys.iter().filter(|k| k.starts_with(prefix)) {
        match delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            k[prefix.len()..]
                .find(d)
                .map(|i| k[..prefix.len() + i + d.len()].to_string())
        }) {
            Some(cp) => out.insert(format!("P:{cp}")),
            None => out.insert(format!("O:{k}")),
        };
    }
    // Objects and prefixes interleave in key order.
    let mut v: Vec<_> = out.into_iter().collect();
    v.sort_by(|a, b| a[2..].cmp(&b[2..]));
    v
}

/// What one full versions listing must return: per key in order, `V:key:id` (`*` when
/// latest) newest first, or `P:prefix` once for a common prefix.
fn versions_model(
    history: &BTreeMap<String, Vec<String>>,
    prefix: &str,
    delimiter: Option<&str>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (k, ids) in history.range(prefix.to_string()..) {
        if !k.starts_with(prefix) {
            break;
        }
        let cp = delimiter.filter(|d| !d.is_empty()).and_then(|d| {
            k[prefix.len()..]
                .find(d)
                .map(|i| k[..prefix.len() + i + d.len()].to_string())
        });
        match cp {
            Some(cp) => {
                let p = format!("P:{cp}");
                if !out.contains(&p) {
                    out.push(p);
                }
            }
            None => out.extend(
                ids.iter()
                    .rev()
                    .enumerate()
                    .map(|(i, id)| format!("V:{k}:{id}{}", if i == 0 { "*" } else { "" })),
            ),
        }
    }
    out
}

/// One page's entries in key order, labelled as in the model.
fn version_entries(page: &VersionPage) -> Vec<String> {
    let mut entries: Vec<(&str, String)> = page
        .versions
        .iter()
        .map(|(r, latest)| {
            let star = if *latest { "*" } else { "" };
            (
                r.key.as_str(),
                format!("V:{}:{}{star}", r.key, r.version_id),
            )
        })
        .chain(page.prefixes.iter().map(|p| (p.as_str(), format!("P:{p}"))))
        .collect();
    // Stable: the versions of one key stay newest first.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries.into_iter().map(|(_, e)| e).collect()
}

fn key() -> impl Strategy<Value = String> {
    proptest::collection::vec(prop_oneof!["a", "b", "/", "é", "-", "ab/"], 1..6)
        .prop_map(|parts| parts.concat())
        .prop_filter("valid key", |k| {
            bucketdb_object::names::validate_key(k).is_ok()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn paging_matches_the_model(
        keys in proptest::collection::btree_set(key(), 0..30),
        prefix in prop_oneof!["", "a", "a/", "b", "é"],
        delimiter in prop_oneof![Just(None), Just(Some("/".to_string())), Just(Some("b".to_string())), Just(Some("ab".to_string()))],
        limit in 1usize..5,
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let got = rt.block_on(async {
            let env = Env::new();
            env.create_bucket("bkt").await;
            for k in &keys {
                env.put("bkt", k, k.as_bytes()).await;
            }
            let mut got = Vec::new();
            let mut cursor = None;
            for _ in 0..=keys.len() + 1 {
                let page = env
                    .svc
                    .list_objects(
                        "bkt",
                        &ListQuery {
                            prefix: prefix.clone(),
                            delimiter: delimiter.clone(),
                            start_after: cursor.clone(),
                            limit,
                        },
                    ).await
                    .unwrap();
                assert!(page.objects.len() + page.prefixes.len() <= limit);
                let mut entries: Vec<String> = page
                    .objects
                    .iter()
                    .map(|o| format!("O:{}", o.key))
                    .chain(page.prefixes.iter().map(|p| format!("P:{p}")))
                    .collect();
                entries.sort_by(|a, b| a[2..].cmp(&b[2..]));
                got.extend(entries);
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => return got,
                }
            }
            panic!("listing did not terminate");
        });
        prop_assert_eq!(got, model(&keys, &prefix, delimiter.as_deref()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn version_paging_matches_the_model(
        unversioned in proptest::collection::btree_set(key(), 0..6),
        // (key, delete?) applied in order once versioning is on.
        ops in proptest::collection::vec((key(), proptest::bool::weighted(0.3)), 0..24),
        prefix in prop_oneof!["", "a", "a/", "b", "é"],
        delimiter in prop_oneof![Just(None), Just(Some("/".to_string())), Just(Some("b".to_string())), Just(Some("ab".to_string()))],
        limit in 1usize..5,
    ) {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let (got, history) = rt.block_on(async {
            let env = Env::new();
            env.create_bucket("bkt").await;
            // Version ids of each key, oldest first.
            let mut history: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for k in &unversioned {
                let id = env.put("bkt", k, k.as_bytes()).await.version_id;
                history.entry(k.clone()).or_default().push(id);
            }
            env.svc.set_versioning("bkt", Versioning::Enabled).await.unwrap();
            for (k, delete) in &ops {
                let id = if *delete {
                    env.svc.delete_object("bkt", k, None).await.unwrap().version_id.unwrap()
                } else {
                    env.put("bkt", k, k.as_bytes()).await.version_id
                };
                history.entry(k.clone()).or_default().push(id);
            }
            let mut got = Vec::new();
            let (mut key_marker, mut version_marker): (Option<String>, Option<String>) =
                (None, None);
            for _ in 0..=unversioned.len() + ops.len() + 1 {
                let page = env
                    .svc
                    .list_bucket_versions(
                        "bkt",
                        &prefix,
                        delimiter.as_deref(),
                        key_marker.as_deref(),
                        version_marker.as_deref(),
                        limit,
                    ).await
                    .unwrap();
                let entries = version_entries(&page);
                assert!(entries.len() <= limit, "page over its limit: {entries:?}");
                let Some(next) = page.next_key_marker else {
                    assert_eq!(page.next_version_id_marker, None);
                    got.extend(entries);
                    return (got, history);
                };
                // The markers name the page's last entry: a version, or a common prefix
                // (then without a version marker).
                let last = entries.last().expect("a truncated page is not empty");
                match &page.next_version_id_marker {
                    Some(v) => assert_eq!(
                        last.trim_end_matches('*'),
                        format!("V:{next}:{v}"),
                    ),
                    None => assert_eq!(last, &format!("P:{next}")),
                }
                got.extend(entries);
                key_marker = Some(next);
                version_marker = page.next_version_id_marker;
            }
            panic!("versions listing did not terminate");
        });
        prop_assert_eq!(got, versions_model(&history, &prefix, delimiter.as_deref()));
    }
}
