//! SMS delivery settings and senders.

/// `GOTRUE_SMS_*` and `GOTRUE_HOOK_SEND_SMS_*`.
#[derive(Debug, Clone, Default)]
pub struct SmsSettings {}
