//! What a transaction may leave on its connection for the next one, and why a connection that
//! ran an escape hatch is closed rather than pooled.
//!
//! A statement can change session state that outlives its transaction: a setting made with
//! `SET` or `set_config(…, false)` (the role, the search path, a custom `myapp.*` value), a
//! session advisory lock, a prepared statement made with `PREPARE` (or `DEALLOCATE` of the
//! connection's own), a cursor `WITH HOLD`, a `LISTEN`, a temporary table (which would shadow a
//! real one for the next transaction), the seed of `random()`, the last value of a sequence.
//! Scoped statements cannot do any of this: they are built from diesel's nodes, and tenant-db
//! refuses the functions that change session state (see [`crate::guard`]). The escape hatches
//! can, and not all of this state can be seen from SQL (the seed cannot), so tenant-db does not
//! try to check it: a connection on which an escape hatch ran is closed when its transaction
//! ends, and the pool opens a fresh one when it needs it. An escape hatch therefore costs a new
//! connection; keep it off hot paths.
//!
//! The tenant setting itself needs nothing: a later transaction replaces it, and outside the
//! transaction that sealed it, it is trusted nowhere (see [`crate::seal`]).
//!
//! Behind a pooler in transaction mode (PgBouncer), closing the client connection does not
//! reset the server connection the pooler hands to the next client: there, session state set
//! through an escape hatch is the pooler's to reset (`server_reset_query_always`).
