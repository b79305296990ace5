#ifndef CTABBYSQLITE_H
#define CTABBYSQLITE_H

/// For a process that opens the datastore for one short call (the CNI plugin): closing the
/// connection neither checkpoints the WAL nor deletes the -wal and -shm files. Every commit is
/// already durable in the WAL (synchronous=FULL); the long-lived agent, or the next commit past
/// the auto-checkpoint threshold, folds it into the database file. `db` is a `sqlite3 *`.
/// Returns SQLITE_OK (0) or the SQLite error code.
int tb_sqlite_defer_checkpoints(void *db);

#endif
