//! Deterministic randomness and the hard values spread through the data: every
//! value is a hash of (seed, table, index, purpose), so records can be rebuilt in
//! any order and any number of times.

/// Domain-separation tags: each table (and the tree) draws from its own stream.
pub(super) const TAG_USER: u64 = 1;
pub(super) const TAG_TAXONOMY: u64 = 2;
pub(super) const TAG_ASSIGNMENT: u64 = 3;
pub(super) const TAG_TREE: u64 = 4;

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A well-mixed value for (seed, what, a, b): the data's only source of chance.
pub(super) fn mix(seed: u64, tag: u64, a: u64, b: u64) -> u64 {
    let x = splitmix(seed ^ tag.wrapping_mul(0xA076_1D64_78BD_642F));
    splitmix(splitmix(x ^ a) ^ b.wrapping_mul(0xE703_7ED1_A0B4_28DB))
}

/// `mix` reduced to 0..n.
pub(super) fn pick(seed: u64, tag: u64, a: u64, b: u64, n: usize) -> usize {
    (mix(seed, tag, a, b) % n.max(1) as u64) as usize
}

/// Values that break naive CSV writers, spreadsheets and path joiners.
const HARD: &[&str] = &[
    "O'Brien, \"The Boss\"",
    "Line one\nLine two",
    "Rocket 🚀 launch ✨",
    "日本語のテキスト",
    "=SUM(A1:A9)",
    "",
    "Ελληνικά и кириллица, العربية",
    "Tab\there, CRLF\r\nend",
    "   spaces around   ",
    "Input/Output > Drivers \\ Legacy",
    "-1+2",
    "@cmd|' /C calc'!A0",
];

/// A hard value for some records: the odd indices of a small account get each of
/// them once (so tiny test accounts see them all), larger ones get a random 1 in 12.
pub(super) fn hard(seed: u64, tag: u64, i: u32) -> Option<&'static str> {
    let i = i as usize;
    if i % 2 == 1 && i / 2 < HARD.len() {
        return Some(HARD[i / 2]);
    }
    let h = mix(seed, tag, i as u64, 99);
    h.is_multiple_of(12).then(|| HARD[(h >> 8) as usize % HARD.len()])
}
