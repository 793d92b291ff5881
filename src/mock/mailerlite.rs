//! The MailerLite mock (to be written).
