//! `tenant-db audit`: the admin audit rows, as lines or as JSON.

use tenant_db::admin::AuditRow;

/// One line per row: when, what, who, for whom, why; a closed row adds its outcome and tables.
pub(crate) fn print(rows: &[AuditRow]) {
    if rows.is_empty() {
        println!("no admin access recorded");
    }
    for r in rows {
        let mut line = format!(
            "{}  {:<6}  {}  tenant {}  reason {:?}  access {}  (grant until {}, as {})",
            r.at, r.event, r.actor, r.tenant, r.reason, r.access_id, r.expires_at, r.db_user
        );
        if let Some(outcome) = &r.outcome {
            line.push_str(&format!(
                "  outcome {outcome}  tables {}",
                r.tables
                    .as_deref()
                    .filter(|t| !t.is_empty())
                    .unwrap_or("none")
            ));
        }
        println!("{line}");
    }
}

/// The rows as one JSON array.
pub(crate) fn to_json(rows: &[AuditRow]) -> serde_json::Value {
    serde_json::Value::Array(
        rows.iter()
            .map(|r| {
                serde_json::json!({
                    "access_id": r.access_id,
                    "event": r.event,
                    "at": r.at,
                    "actor": r.actor,
                    "reason": r.reason,
                    "tenant": r.tenant,
                    "expires_at": r.expires_at,
                    "db_user": r.db_user,
                    "tables": r.tables.as_deref().map(|t| t.split(',').filter(|s| !s.is_empty()).collect::<Vec<_>>()),
                    "outcome": r.outcome,
                })
            })
            .collect(),
    )
}
