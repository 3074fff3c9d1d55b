//! The `Range` request header (a single byte range, as S3 supports).

use bucketdb_object::RangeSpec;

/// Parse `bytes=a-b`, `bytes=a-` or `bytes=-n`. `Ok(None)` means the header should be
/// ignored (another unit, or several ranges, which S3 answers with the whole object).
pub fn parse_range(value: &str) -> Result<Option<RangeSpec>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.trim().split_once('-').ok_or(())?;
    let num = |s: &str| s.trim().parse::<u64>().map_err(|_| ());
    match (a.trim().is_empty(), b.trim().is_empty()) {
        (true, true) => Err(()),
        (true, false) => Ok(Some(RangeSpec::Suffix(num(b)?))),
        (false, true) => Ok(Some(RangeSpec::From {
            start: num(a)?,
            end: None,
        })),
        (false, false) => Ok(Some(RangeSpec::From {
            start: num(a)?,
            end: Some(num(b)?),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms_and_rejects_garbage() {
        assert_eq!(
            parse_range("bytes=0-9"),
            Ok(Some(RangeSpec::From {
                start: 0,
                end: Some(9)
            }))
        );
        assert_eq!(
            parse_range("bytes=5-"),
            Ok(Some(RangeSpec::From {
                start: 5,
                end: None
            }))
        );
        assert_eq!(parse_range("bytes=-7"), Ok(Some(RangeSpec::Suffix(7))));
        assert_eq!(parse_range("items=0-1"), Ok(None));
        assert_eq!(parse_range("bytes=0-1,3-4"), Ok(None));
        for bad in [
            "bytes=-",
            "bytes=a-b",
            "bytes=1",
            "bytes=-x",
            "bytes=99999999999999999999-",
        ] {
            assert_eq!(parse_range(bad), Err(()), "{bad}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_input(s in ".{0,64}", tail in "[0-9 ,=-]{0,24}") {
            let _ = parse_range(&s);
            let _ = parse_range(&format!("bytes={tail}"));
        }

        #[test]
        fn well_formed_ranges_parse_to_what_they_say(a in 0u64..u64::MAX / 2, len in 0u64..1 << 40) {
            let b = a + len;
            proptest::prop_assert_eq!(
                parse_range(&format!("bytes={a}-{b}")),
                Ok(Some(RangeSpec::From { start: a, end: Some(b) }))
            );
            proptest::prop_assert_eq!(
                parse_range(&format!("bytes=-{len}")),
                Ok(Some(RangeSpec::Suffix(len)))
            );
        }
    }
}
