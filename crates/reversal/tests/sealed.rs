//! Records sealed under a data key at rest: nothing of a payload is readable in the
//! file, what was written reads back, a clear file is migrated, a sealed file is refused
//! without its key, a damaged sealed record is reported (never a panic), and rotation
//! keeps old records readable.

use std::sync::Arc;

use isoswitch_reversal::record::{self, RecordFile, SEALED_MAGIC};
use isoswitch_reversal::seal::DataKeys;
use isoswitch_reversal::ReversalError;

const PAN: &[u8] = b"6222020000000001";

fn keys(b: u8) -> Arc<DataKeys> {
    Arc::new(DataKeys::new(&[b; 32]).unwrap())
}

fn payload(i: u8) -> Vec<u8> {
    let mut p = PAN.to_vec();
    p.extend_from_slice(b" amount 000000001000 record ");
    p.push(b'0' + i);
    p
}

fn read_all(
    path: &std::path::Path,
    seal: Option<Arc<DataKeys>>,
) -> Result<Vec<Vec<u8>>, ReversalError> {
    let mut got = Vec::new();
    RecordFile::open_with(path, seal, |_, p| {
        got.push(p.to_vec());
        Ok(())
    })?;
    Ok(got)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn sealed_records_read_back_and_leave_no_pan_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.store");
    {
        let (mut f, _) = RecordFile::open_with(&path, Some(keys(1)), |_, _| Ok(())).unwrap();
        for i in 0..3 {
            f.append_with(|out| record::frame(&payload(i), out))
                .unwrap();
        }
        // A compaction keeps them sealed.
        let mut framed = Vec::new();
        for i in 0..2 {
            record::frame(&payload(i), &mut framed).unwrap();
        }
        f.rewrite(&framed).unwrap();
        f.append_with(|out| record::frame(&payload(7), out))
            .unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(SEALED_MAGIC));
    assert!(!contains(&bytes, PAN), "the PAN is in the file in clear");
    assert!(!contains(&bytes, b"amount"));
    let got = read_all(&path, Some(keys(1))).unwrap();
    assert_eq!(got, vec![payload(0), payload(1), payload(7)]);
    // Without the key: refused, naming the file.
    let e = read_all(&path, None).unwrap_err();
    assert!(matches!(e, ReversalError::SealedFile { .. }), "{e}");
    assert!(e.to_string().contains("x.store"), "{e}");
    // Under another key: the records do not open — reported with the offset.
    let e = read_all(&path, Some(keys(2))).unwrap_err();
    assert!(matches!(e, ReversalError::Corrupt { offset: 8, .. }), "{e}");
    // Rotation: a new current key with the old one as previous reads everything, and
    // what it appends is sealed under the new key.
    let rotated = Arc::new(
        DataKeys::new(&[2; 32])
            .unwrap()
            .with_previous(&[1; 32])
            .unwrap(),
    );
    {
        let (mut f, _) =
            RecordFile::open_with(&path, Some(rotated.clone()), |_, _| Ok(())).unwrap();
        f.append_with(|out| record::frame(&payload(8), out))
            .unwrap();
    }
    let got = read_all(&path, Some(rotated)).unwrap();
    assert_eq!(got.len(), 4);
    assert!(read_all(&path, Some(keys(1))).is_err());
}

#[test]
fn a_clear_file_is_migrated_when_opened_with_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.journal");
    {
        let (mut f, _) = RecordFile::open(&path, |_, _| Ok(())).unwrap();
        for i in 0..3 {
            f.append_with(|out| record::frame(&payload(i), out))
                .unwrap();
        }
    }
    assert!(contains(&std::fs::read(&path).unwrap(), PAN));
    let got = read_all(&path, Some(keys(1))).unwrap();
    assert_eq!(got, (0..3).map(payload).collect::<Vec<_>>());
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(SEALED_MAGIC));
    assert!(!contains(&bytes, PAN), "migration left the PAN in clear");
    assert_eq!(read_all(&path, Some(keys(1))).unwrap().len(), 3);
}

#[test]
fn damaged_sealed_records_are_reported_or_cut_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("d.store");
    {
        let (mut f, _) = RecordFile::open_with(&path, Some(keys(1)), |_, _| Ok(())).unwrap();
        for i in 0..3 {
            f.append_with(|out| record::frame(&payload(i), out))
                .unwrap();
        }
    }
    let good = std::fs::read(&path).unwrap();
    // Every single flipped byte and every truncation: an error or fewer records, never
    // a panic, never a record that differs from what was written.
    for i in 8..good.len() {
        for (bad, cut) in [(good.clone(), false), (good[..i].to_vec(), true)] {
            let mut bad = bad;
            if !cut {
                bad[i] ^= 0x40;
            }
            std::fs::write(&path, &bad).unwrap();
            if let Ok(got) = read_all(&path, Some(keys(1))) {
                assert!(got.len() <= 3);
                for (n, p) in got.iter().enumerate() {
                    assert_eq!(p, &payload(n as u8));
                }
            }
        }
    }
}
