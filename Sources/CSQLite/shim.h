#include <sqlite3.h>

/* sqlite3_db_config is variadic, which Swift does not import: the form that sets an int
 * option (and ignores the option's new value). */
static inline int poold_sqlite_db_config(sqlite3 *db, int op, int value) {
    int current = 0;
    return sqlite3_db_config(db, op, value, &current);
}
