//! Sample values the generator picks from, hard ones included on purpose: quotes,
//! commas, line breaks, right-to-left and CJK text, spreadsheet formulas, nulls and
//! a 10 KB string, so every account exercises what CSV writers get wrong.

pub(super) const FIRST_NAMES: [&str; 16] = [
    "Maria",
    "Jonas",
    "Sofia",
    "Liam",
    "Emma",
    "Noah",
    "Olivia",
    "Lukas",
    "Αθηνά",
    "Γιώργος",
    "陈伟",
    "さくら",
    "محمد",
    "Fatima",
    "José",
    "Zoë",
];
pub(super) const LAST_NAMES: [&str; 12] = [
    "Keller",
    "Müller",
    "Smith",
    "O'Brien",
    "Nguyen",
    "Papadopoulos",
    "王",
    "田中",
    "الحسن",
    "García",
    "van der Berg",
    "Kowalski",
];
pub(super) const EMAIL_NAMES: [&str; 8] = ["maria", "jonas", "sofia", "liam", "emma", "noah", "olivia", "lukas"];
pub(super) const COMPANIES: [&str; 7] =
    ["Northwind GmbH", "Acme Inc.", "Globex", "Initech", "Umbrella Corp", "Contoso Ltd.", "Wayne Enterprises"];
pub(super) const PLACES: [(&str, &str); 7] = [
    ("Germany", "Leipzig"),
    ("Greece", "Αθήνα"),
    ("Japan", "東京"),
    ("Egypt", "القاهرة"),
    ("United States", "New York"),
    ("France", "Paris"),
    ("Brazil", "São Paulo"),
];
pub(super) const STATES: [&str; 3] = ["CA", "NY", "Bavaria"];
pub(super) const PLANS: [&str; 3] = ["free", "pro", "business"];
pub(super) const SOURCES: [&str; 3] = ["api", "import", "manual"];
/// Values a CSV writer or a spreadsheet can get wrong; `None` is a JSON null.
/// Index `LONG` stands for a 10 KB string built once per account.
pub(super) const TRICKY: [Option<&str>; 16] = [
    Some("O\"Brien \"The Boss\" Ltd"),
    Some("Smith, Jones, and Partners"),
    Some("line one\r\nline two"),
    Some("first\nsecond\n"),
    Some("🎉 Party Supplies 🥳"),
    Some("Ελληνική Εταιρεία"),
    Some("株式会社東京"),
    Some("شركة القاهرة"),
    Some("=SUM(A1:A2)"),
    Some("+49 30 1234567"),
    Some("-5 Discount"),
    Some("@handle"),
    Some(""),
    Some("  padded both sides  "),
    None,
    Some("LONG"),
];
pub(super) const LONG: usize = 15;
pub(super) const GROUP_NAMES: [&str; 12] = [
    "Newsletter",
    "VIP, Customers",
    "Ελληνικά",
    "=Leads",
    "Kunden \"Premium\"",
    "Webinar 2024",
    "東京 subscribers",
    "  Spaced group  ",
    "عملاء",
    "Beta testers 🚀",
    "+Partners",
    "-Churned",
];
pub(super) const CAMPAIGN_NAMES: [&str; 10] = [
    "October product update",
    "Sale: 50% off, today only!",
    "Ελληνικό newsletter",
    "=HYPERLINK(\"http://example.org\")",
    "Line one\r\nLine two",
    "  Spaced subject  ",
    "🎉 Launch day",
    "東京からのお知らせ",
    "نشرة إخبارية",
    "Weekly digest",
];
