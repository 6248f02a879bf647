//! Fuzzes the `TenantId` parsers: any input is a typed error or an id that round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tenant_db::TenantId;

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = TenantId::parse_bytes(data) {
        assert_eq!(id.to_string().parse::<TenantId>(), Ok(id));
    }
    if let Ok(s) = std::str::from_utf8(data) {
        assert_eq!(s.parse::<TenantId>().ok(), TenantId::parse_bytes(data).ok());
    }
});
