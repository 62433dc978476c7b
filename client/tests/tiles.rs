//! c2sp.org/tlog-tiles paths and entry bundles.

use ledger_client::tiles::{
    decode_bundle, encode_bundle, entry_bundles_for_tree, partial_width, tiles_for_tree,
    BundleError, TileKind, TilePath, TilePathError, MAX_ENTRY_SIZE,
};
use rand::{Rng, SeedableRng};

fn hashes(level: u8) -> TileKind {
    TileKind::Hashes { level }
}

#[test]
fn spec_examples_parse() {
    let cases = [
        ("tile/0/x001/x234/067", hashes(0), 1_234_067, 256),
        ("tile/1/000.p/17", hashes(1), 0, 17),
        ("tile/entries/x001/067.p/3", TileKind::Entries, 1_067, 3),
        ("tile/0/000", hashes(0), 0, 256),
        ("tile/63/999", hashes(63), 999, 256),
        ("tile/2/000.p/1", hashes(2), 0, 1),
        ("tile/0/x001/000.p/255", hashes(0), 1000, 255),
        ("tile/entries/272", TileKind::Entries, 272, 256),
        (
            "tile/0/x018/x446/x744/x073/x709/x551/615",
            hashes(0),
            u64::MAX,
            256,
        ),
    ];
    for (path, kind, index, width) in cases {
        let t = TilePath::parse(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(t, TilePath { kind, index, width }, "{path}");
        assert_eq!(t.to_path(), path);
        assert_eq!(t.to_string(), path);
        assert_eq!(t.is_partial(), width < 256);
    }
}

#[test]
fn spec_example_tree_of_70000() {
    let tiles = tiles_for_tree(70_000);
    let level0_full: Vec<_> = tiles
        .iter()
        .filter(|t| t.kind == hashes(0) && !t.is_partial())
        .collect();
    assert_eq!(level0_full.len(), 273);
    assert!(level0_full
        .iter()
        .enumerate()
        .all(|(i, t)| t.index == i as u64));
    let partial = |level| {
        tiles
            .iter()
            .filter(|t| t.kind == hashes(level) && t.is_partial())
            .map(|t| (t.index, t.width))
            .collect::<Vec<_>>()
    };
    assert_eq!(partial(0), vec![(273, 112)]);
    assert_eq!(
        tiles
            .iter()
            .filter(|t| t.kind == hashes(1) && !t.is_partial())
            .count(),
        1
    );
    assert_eq!(partial(1), vec![(1, 17)]);
    assert_eq!(partial(2), vec![(0, 1)]);
    assert_eq!(tiles.len(), 273 + 1 + 1 + 1 + 1);
    assert!(tiles
        .iter()
        .all(|t| matches!(t.kind, TileKind::Hashes { level } if level <= 2)));
    assert_eq!(partial_width(70_000, 0), 112);
    assert_eq!(partial_width(70_000, 1), 17);
    assert_eq!(partial_width(70_000, 2), 1);
    assert_eq!(partial_width(70_000, 3), 0);
}

#[test]
fn spec_example_tree_of_256() {
    assert_eq!(
        tiles_for_tree(256),
        vec![
            TilePath::full(hashes(0), 0),
            TilePath {
                kind: hashes(1),
                index: 0,
                width: 1
            }
        ]
    );
    assert!(tiles_for_tree(0).is_empty());
    assert_eq!(
        tiles_for_tree(1),
        vec![TilePath {
            kind: hashes(0),
            index: 0,
            width: 1
        }]
    );
    assert_eq!(
        entry_bundles_for_tree(513),
        vec![
            TilePath::full(TileKind::Entries, 0),
            TilePath::full(TileKind::Entries, 1),
            TilePath {
                kind: TileKind::Entries,
                index: 2,
                width: 1
            }
        ]
    );
}

#[test]
fn random_round_trips() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x7469_6c65);
    for _ in 0..20_000 {
        let kind = if rng.gen_bool(0.2) {
            TileKind::Entries
        } else {
            hashes(rng.gen_range(0..=63))
        };
        // Spread indexes over every number of 3-digit groups.
        let digits = rng.gen_range(1..=20u32);
        let index = if digits == 20 {
            rng.gen()
        } else {
            rng.gen_range(0..10u64.pow(digits))
        };
        let width = if rng.gen_bool(0.5) {
            256
        } else {
            rng.gen_range(1..=255)
        };
        let t = TilePath { kind, index, width };
        let s = t.to_path();
        assert_eq!(TilePath::parse(&s), Ok(t), "{s}");
        assert_eq!(s.parse::<TilePath>(), Ok(t));
    }
}

#[test]
fn malformed_paths_are_rejected() {
    use TilePathError as E;
    type Check = fn(&TilePathError) -> bool;
    let cases: &[(&str, Check)] = &[
        ("", |e| *e == E::Empty),
        ("tile", |e| *e == E::MissingTilePrefix),
        ("/tile/0/000", |e| *e == E::MissingTilePrefix),
        ("tiles/0/000", |e| *e == E::MissingTilePrefix),
        ("tile/", |e| *e == E::EmptyElement),
        ("tile/0", |e| *e == E::MissingIndex),
        ("tile/0/", |e| *e == E::EmptyElement),
        ("tile//000", |e| *e == E::EmptyElement),
        ("tile/00/000", |e| matches!(e, E::BadLevel(_))),
        ("tile/01/000", |e| matches!(e, E::BadLevel(_))),
        ("tile/-1/000", |e| matches!(e, E::BadLevel(_))),
        ("tile/+1/000", |e| matches!(e, E::BadLevel(_))),
        ("tile/a/000", |e| matches!(e, E::BadLevel(_))),
        ("tile/1000/000", |e| matches!(e, E::BadLevel(_))),
        ("tile/64/000", |e| *e == E::LevelTooLarge(64)),
        ("tile/99/000", |e| *e == E::LevelTooLarge(99)),
        ("tile/Entries/000", |e| matches!(e, E::BadLevel(_))),
        ("tile/0/67", |e| matches!(e, E::BadIndexElement { .. })),
        ("tile/0/0067", |e| matches!(e, E::BadIndexElement { .. })),
        ("tile/0/06a", |e| matches!(e, E::BadIndexElement { .. })),
        ("tile/0/001/234", |e| matches!(e, E::TrailingElements)),
        ("tile/0/x001", |e| matches!(e, E::BadIndexElement { .. })),
        ("tile/0/X001/234", |e| {
            matches!(e, E::BadIndexElement { .. })
        }),
        ("tile/0/x01/234", |e| matches!(e, E::BadIndexElement { .. })),
        ("tile/0/x0001/234", |e| {
            matches!(e, E::BadIndexElement { .. })
        }),
        ("tile/0/x001/x234", |e| {
            matches!(e, E::BadIndexElement { .. })
        }),
        ("tile/0/x000/067", |e| {
            matches!(e, E::NonCanonicalIndex { .. })
        }),
        ("tile/0/x000/x001/067", |e| {
            matches!(e, E::NonCanonicalIndex { .. })
        }),
        ("tile/0/x018/x446/x744/x073/x709/x551/616", |e| {
            *e == E::IndexOverflow
        }),
        ("tile/0/x999/x999/x999/x999/x999/x999/999", |e| {
            *e == E::IndexOverflow
        }),
        ("tile/0/x001/x001/x001/x001/x001/x001/x001/000", |e| {
            *e == E::IndexOverflow
        }),
        ("tile/0/000.p", |e| *e == E::MissingWidth),
        ("tile/0/000.p/", |e| *e == E::MissingWidth),
        ("tile/0/000.p/0", |e| *e == E::WidthOutOfRange(0)),
        ("tile/0/000.p/256", |e| *e == E::WidthOutOfRange(256)),
        ("tile/0/000.p/999", |e| *e == E::WidthOutOfRange(999)),
        ("tile/0/000.p/017", |e| matches!(e, E::BadWidth(_))),
        ("tile/0/000.p/1000", |e| matches!(e, E::BadWidth(_))),
        ("tile/0/000.p/-1", |e| matches!(e, E::BadWidth(_))),
        ("tile/0/000.p/ 5", |e| matches!(e, E::BadWidth(_))),
        ("tile/0/000.p/5/", |e| *e == E::TrailingElements),
        ("tile/0/000.p/5/6", |e| *e == E::TrailingElements),
        ("tile/0/000/", |e| *e == E::TrailingElements),
        ("tile/0/000.q/5", |e| matches!(e, E::BadIndexElement { .. })),
        ("tile/0/x000.p/5", |e| {
            matches!(e, E::BadIndexElement { .. })
        }),
        ("tile/entries", |e| *e == E::MissingIndex),
        ("tile/entries/x001", |e| {
            matches!(e, E::BadIndexElement { .. })
        }),
        ("tile/entries/000.p/0", |e| *e == E::WidthOutOfRange(0)),
        ("tile/0/\u{0663}00", |e| {
            matches!(e, E::BadIndexElement { .. })
        }),
    ];
    for (path, ok) in cases {
        match TilePath::parse(path) {
            Err(e) => assert!(ok(&e), "{path:?}: unexpected error {e:?}"),
            Ok(t) => panic!("{path:?} accepted as {t:?}"),
        }
    }
}

#[test]
fn bundles_round_trip() {
    let big = vec![0xabu8; MAX_ENTRY_SIZE];
    let entries: Vec<&[u8]> = vec![b"a", b"hello world", &big, b"\x00\x00", b"z"];
    let bundle = encode_bundle(entries.iter().copied()).unwrap();
    assert_eq!(&bundle[..3], &[0, 1, b'a']);
    assert_eq!(decode_bundle(&bundle).unwrap(), entries);
    assert_eq!(decode_bundle(&[]).unwrap(), Vec::<&[u8]>::new());
    assert_eq!(encode_bundle(std::iter::empty()).unwrap(), Vec::<u8>::new());
}

#[test]
fn bundle_encoding_limits() {
    let too_big = vec![1u8; MAX_ENTRY_SIZE + 1];
    assert_eq!(
        encode_bundle([&b"ok"[..], &too_big]),
        Err(BundleError::EntryTooLarge {
            index: 1,
            len: MAX_ENTRY_SIZE + 1
        })
    );
    assert_eq!(
        encode_bundle([&b"ok"[..], b"", b"x"]),
        Err(BundleError::EmptyEntry { index: 1 })
    );
}

#[test]
fn malformed_bundles_name_the_offset() {
    // Entry "abc" at offset 0, then a broken element at offset 5.
    let cases: Vec<(Vec<u8>, BundleError)> = vec![
        (vec![0], BundleError::TruncatedLength { offset: 0 }),
        (
            vec![0, 3, b'a', b'b', b'c', 0],
            BundleError::TruncatedLength { offset: 5 },
        ),
        (
            vec![0, 3, b'a', b'b'],
            BundleError::TruncatedEntry {
                offset: 0,
                declared: 3,
                available: 2,
            },
        ),
        (
            vec![0, 3, b'a', b'b', b'c', 0xff, 0xff, 1, 2],
            BundleError::TruncatedEntry {
                offset: 5,
                declared: 65535,
                available: 2,
            },
        ),
        (vec![0, 0], BundleError::ZeroLength { offset: 0 }),
        (
            vec![0, 3, b'a', b'b', b'c', 0, 0, 0, 1, b'x'],
            BundleError::ZeroLength { offset: 5 },
        ),
    ];
    for (bytes, want) in cases {
        let got = decode_bundle(&bytes).unwrap_err();
        assert_eq!(got, want, "{bytes:?}");
        assert!(got.to_string().contains("offset"), "{got}");
    }
}

#[test]
fn random_bundles_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..5_000 {
        let len = rng.gen_range(0..64);
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen_range(0..4)).collect();
        if let Ok(entries) = decode_bundle(&bytes) {
            assert_eq!(encode_bundle(entries.iter().copied()).unwrap(), bytes);
        }
    }
}
