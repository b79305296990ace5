// sqlite3_db_config is variadic, which Swift cannot call: this wrapper is the whole target.
#include <sqlite3.h>

#include "CTabbySQLite.h"

int tb_sqlite_defer_checkpoints(void *db) {
    sqlite3 *connection = (sqlite3 *)db;
    int result = sqlite3_db_config(connection, SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, 1, (int *)0);
    if (result != SQLITE_OK) return result;
    int persist = 1;
    return sqlite3_file_control(connection, "main", SQLITE_FCNTL_PERSIST_WAL, &persist);
}
