//! Listing checked against a model: for random key sets, prefixes, delimiters and page
//! sizes, paging through `list_objects` yields exactly what S3's rules say, each entry
//! once, in UTF-8 binary order, and never panics.

mod common;

use std::collections::BTreeSet;

use bucketdb_object::ListQuery;
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
                    )
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
