// Shared set-up for doc examples: a tenant table `notes`.
diesel::table! {
    notes (id) {
        id -> BigInt,
        tenant_id -> Uuid,
        body -> Text,
    }
}
