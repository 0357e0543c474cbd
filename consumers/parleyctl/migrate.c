/*
 * parleyctl migrate: applies conf/migrations/NNNN_name.sql in version order
 * and records each in schema_migrations, with the checksum of the file as
 * applied.
 *
 * Everything that can be checked before touching the schema is checked
 * first, and any failure there applies nothing: bad or duplicate file
 * names, applied files that changed since (drift), applied versions with no
 * file, and statements that do not split (unterminated quotes).  DDL commits
 * on its own in MySQL, MariaDB and TiDB, so a migration that fails half-way
 * cannot be rolled back; it stays unrecorded, and its statements are
 * written to be re-runnable (IF NOT EXISTS), so the next run completes it.
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <mysqld_error.h>

#include "parley_migration.h"
#include "parley_sql_split.h"
#include "parleyctl.h"

#define DEFAULT_DIR   "conf/migrations"
#define FILE_SIZE_MAX (16 * 1024 * 1024)

typedef struct {
    parley_migration_t m;
    char              *content;
    size_t             len;
    char               checksum[PARLEY_SHA256_HEX_LEN + 1];
} mig_file_t;

typedef struct {
    uint64_t version;
    char     name[PARLEY_MIGRATION_FILE_MAX + 1];
    char     checksum[PARLEY_SHA256_HEX_LEN + 1];
    char     applied_at[32];
} mig_row_t;

typedef struct {
    const char *dir;
    mig_file_t *files;
    size_t      nfiles;
    mig_row_t  *rows;
    size_t      nrows;
} mig_state_t;

static const char create_table_sql[] =
    "CREATE TABLE IF NOT EXISTS schema_migrations ("
    " version BIGINT NOT NULL,"
    " name VARCHAR(255) NOT NULL,"
    " checksum CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,"
    " applied_at DATETIME(3) NOT NULL,"
    " PRIMARY KEY (version)"
    ") ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin";

static void state_free(mig_state_t *st)
{
    size_t i;

    for (i = 0; i < st->nfiles; i++) {
        free(st->files[i].content);
    }
    free(st->files);
    free(st->rows);
}

/* Reads a whole regular file of at most FILE_SIZE_MAX bytes. */
static int read_file(const char *path, char **content, size_t *len)
{
    struct stat sb;
    FILE       *f;
    char       *buf;
    size_t      n;

    f = fopen(path, "rb");
    if (f == NULL) {
        return parleyctl_fail("%s: %s", path, strerror(errno));
    }

    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return parleyctl_fail("%s: not a regular file", path);
    }
    if (sb.st_size > FILE_SIZE_MAX) {
        fclose(f);
        return parleyctl_fail("%s: larger than %d MiB", path,
                              FILE_SIZE_MAX >> 20);
    }

    buf = parleyctl_alloc((size_t) sb.st_size + 1);
    n = fread(buf, 1, (size_t) sb.st_size + 1, f);
    if (ferror(f) || n != (size_t) sb.st_size) {
        fclose(f);
        free(buf);
        return parleyctl_fail("%s: read failed or the file changed while read",
                              path);
    }
    fclose(f);

    *content = buf;
    *len = n;
    return 0;
}

/*
 * Loads every migration of st->dir, sorted, each with its content and
 * checksum; fails on a misnamed .sql file, a duplicate version or an empty
 * directory.
 */
static int load_files(mig_state_t *st)
{
    DIR                  *d;
    struct dirent        *e;
    parley_migration_t   *list = NULL;
    const char           *reason;
    char                  path[4096];
    size_t                n = 0, cap = 0, dup, i;
    parley_migration_rc_t rc;
    int                   ret = PARLEYCTL_FAIL;

    d = opendir(st->dir);
    if (d == NULL) {
        return parleyctl_fail("migrations directory %s: %s", st->dir,
                              strerror(errno));
    }

    while ((e = readdir(d)) != NULL) {
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            list = parleyctl_realloc(list, cap * sizeof(*list));
        }

        rc = parley_migration_parse_name(e->d_name, strlen(e->d_name), &list[n],
                                         &reason);
        if (rc == PARLEY_MIGRATION_INVALID) {
            parleyctl_fail("%s/%s: %s", st->dir, e->d_name, reason);
            closedir(d);
            goto done;
        }
        n += rc == PARLEY_MIGRATION_VALID;
    }
    closedir(d);

    if (n == 0) {
        parleyctl_fail("no migrations (NNNN_name.sql) in %s", st->dir);
        goto done;
    }

    parley_migration_sort(list, n);

    dup = parley_migration_find_duplicate(list, n);
    if (dup < n) {
        parleyctl_fail("%s: %s and %s have the same version %" PRIu64, st->dir,
                       list[dup - 1].file, list[dup].file, list[dup].version);
        goto done;
    }

    st->files = parleyctl_alloc(n * sizeof(*st->files));
    for (i = 0; i < n; i++) {
        mig_file_t *f = &st->files[i];

        f->m = list[i];
        f->content = NULL;
        st->nfiles++;

        snprintf(path, sizeof(path), "%s/%s", st->dir, f->m.file);
        if (read_file(path, &f->content, &f->len) != 0) {
            goto done;
        }
        if (parley_migration_checksum(f->content, f->len, f->checksum) != 0) {
            parleyctl_fail("%s: SHA-256 failed", path);
            goto done;
        }
    }

    ret = 0;

done:
    free(list);
    return ret;
}

/*
 * Loads schema_migrations, ordered by version.  When the table does not
 * exist (a new database): with missing_ok, no rows; else an error.
 */
static int load_rows(mig_state_t *st, MYSQL *db, int missing_ok)
{
    static const char sql[] =
        "SELECT version, name, checksum, applied_at FROM schema_migrations"
        " ORDER BY version";
    MYSQL_RES *res;
    MYSQL_ROW  row;
    mig_row_t *r;
    size_t     n;

    if (mysql_real_query(db, sql, sizeof(sql) - 1) != 0) {
        if (missing_ok && mysql_errno(db) == ER_NO_SUCH_TABLE) {
            return 0;
        }
        return parleyctl_fail("read schema_migrations: %s",
                              parleyctl_db_error(db));
    }

    res = mysql_store_result(db);
    if (res == NULL) {
        return parleyctl_fail("read schema_migrations: %s",
                              parleyctl_db_error(db));
    }

    n = (size_t) mysql_num_rows(res);
    st->rows = parleyctl_alloc(n * sizeof(*st->rows));

    while ((row = mysql_fetch_row(res)) != NULL) {
        r = &st->rows[st->nrows++];
        r->version = strtoull(row[0], NULL, 10);
        snprintf(r->name, sizeof(r->name), "%s", row[1] ? row[1] : "");
        snprintf(r->checksum, sizeof(r->checksum), "%s", row[2] ? row[2] : "");
        snprintf(r->applied_at, sizeof(r->applied_at), "%s",
                 row[3] ? row[3] : "");
    }

    mysql_free_result(res);
    return 0;
}

static const mig_row_t *find_row(const mig_state_t *st, uint64_t version)
{
    size_t i;

    for (i = 0; i < st->nrows; i++) {
        if (st->rows[i].version == version) {
            return &st->rows[i];
        }
    }
    return NULL;
}

static const mig_file_t *find_file(const mig_state_t *st, uint64_t version)
{
    size_t i;

    for (i = 0; i < st->nfiles; i++) {
        if (st->files[i].m.version == version) {
            return &st->files[i];
        }
    }
    return NULL;
}

/*
 * Drift: an applied migration whose file changed, or that has no file.
 * Reports every case, returns how many.
 */
static size_t check_drift(const mig_state_t *st)
{
    const mig_file_t *f;
    size_t            i, bad = 0;

    for (i = 0; i < st->nrows; i++) {
        const mig_row_t *r = &st->rows[i];

        f = find_file(st, r->version);
        if (f == NULL) {
            parleyctl_fail("migrate: version %04" PRIu64 " (%s) is applied but "
                           "%s has no file for it: is this directory older "
                           "than the database?",
                           r->version, r->name, st->dir);
            bad++;
        } else if (strcmp(f->checksum, r->checksum) != 0) {
            parleyctl_fail("migrate: %s/%s changed after it was applied "
                           "(checksum applied %.12s..., now %.12s...): restore "
                           "it and put the change in a new migration",
                           st->dir, f->m.file, r->checksum, f->checksum);
            bad++;
        }
    }
    return bad;
}

/* Counts the statements of f; fails, naming the file, when it does not split. */
static int count_statements(const mig_state_t *st, const mig_file_t *f,
                            size_t *count)
{
    parley_sql_split_t sp;
    parley_sql_stmt_t  stmt;
    int                rc;

    *count = 0;
    parley_sql_split_init(&sp, f->content, f->len);
    while ((rc = parley_sql_split_next(&sp, &stmt)) == 1) {
        (*count)++;
    }

    if (rc < 0) {
        return parleyctl_fail("migrate: %s/%s:%u: %s", st->dir, f->m.file,
                              sp.error_line, sp.error);
    }
    if (*count == 0) {
        return parleyctl_fail("migrate: %s/%s holds no statement", st->dir,
                              f->m.file);
    }
    return 0;
}

/* the first line of a statement, shortened, for error messages */
static void print_statement_head(const parley_sql_stmt_t *stmt)
{
    size_t n = 0;

    while (n < stmt->len && n < 100 && stmt->text[n] != '\n'
           && stmt->text[n] != '\r')
    {
        n++;
    }
    fprintf(stderr, "parleyctl:   the statement: %.*s%s\n", (int) n,
            stmt->text, n < stmt->len ? " ..." : "");
}

/*
 * Records f as applied.  A duplicate key means a concurrent migrate
 * recorded it first: fine when it recorded the same checksum.
 */
static int record(const mig_state_t *st, MYSQL *db, const mig_file_t *f)
{
    parleyctl_sql_t sql;
    MYSQL_RES      *res;
    MYSQL_ROW       row;
    unsigned        err;
    int             same;

    parleyctl_sql_init(&sql, db);
    parleyctl_sql_raw(&sql, "INSERT INTO schema_migrations"
                            " (version, name, checksum, applied_at) VALUES (");
    parleyctl_sql_u64(&sql, f->m.version);
    parleyctl_sql_raw(&sql, ", ");
    parleyctl_sql_str(&sql, f->m.name, strlen(f->m.name));
    parleyctl_sql_raw(&sql, ", ");
    parleyctl_sql_str(&sql, f->checksum, PARLEY_SHA256_HEX_LEN);
    parleyctl_sql_raw(&sql, ", UTC_TIMESTAMP(3))");

    err = parleyctl_exec(db, sql.data, sql.len, NULL);
    if (err == 0) {
        parleyctl_sql_free(&sql);
        return 0;
    }
    if (err != ER_DUP_ENTRY) {
        parleyctl_sql_free(&sql);
        return parleyctl_fail("migrate: %s/%s ran but recording it failed: %s",
                              st->dir, f->m.file, parleyctl_db_error(db));
    }

    parleyctl_sql_reset(&sql);
    parleyctl_sql_raw(&sql, "SELECT checksum FROM schema_migrations"
                            " WHERE version = ");
    parleyctl_sql_u64(&sql, f->m.version);
    res = parleyctl_select(db, sql.data, "migrate: read schema_migrations");
    parleyctl_sql_free(&sql);
    if (res == NULL) {
        return PARLEYCTL_FAIL;
    }
    row = mysql_fetch_row(res);
    same = row && row[0] && strcmp(row[0], f->checksum) == 0;
    mysql_free_result(res);

    if (!same) {
        return parleyctl_fail("migrate: %s/%s: a concurrent migrate recorded "
                              "another file for version %04" PRIu64,
                              st->dir, f->m.file, f->m.version);
    }
    return 0;
}

/* Runs every statement of f, then records it. */
static int apply(const mig_state_t *st, MYSQL *db, const mig_file_t *f,
                 size_t count)
{
    parley_sql_split_t sp;
    parley_sql_stmt_t  stmt;
    size_t             k = 0;

    parley_sql_split_init(&sp, f->content, f->len);

    while (parley_sql_split_next(&sp, &stmt) == 1) {
        k++;
        if (parleyctl_exec(db, stmt.text, stmt.len, NULL) != 0) {
            parleyctl_fail("migrate: %s/%s: statement %zu of %zu (line %u) "
                           "failed: %s",
                           st->dir, f->m.file, k, count, stmt.line,
                           parleyctl_db_error(db));
            print_statement_head(&stmt);
            return parleyctl_fail("migrate: %s is not recorded as applied; "
                                  "fix it and run migrate again (the %zu "
                                  "statement%s before it ran, so they must "
                                  "be re-runnable)",
                                  f->m.file, k - 1, k == 2 ? "" : "s");
        }
    }

    return record(st, db, f);
}

/*
 * migrate status: every version found in the directory or the table, in
 * order.  Read-only: creates neither the database nor schema_migrations.
 */
static int migrate_status(int argc, char **argv)
{
    mig_state_t       st = { DEFAULT_DIR, NULL, 0, NULL, 0 };
    parleyctl_opt_t   opts[2];
    const mig_file_t *f;
    const mig_row_t  *r;
    const char       *state;
    char              version[24], missing[PARLEY_MIGRATION_FILE_MAX + 32];
    size_t            i = 0, j = 0, pending = 0, bad = 0;
    MYSQL            *db;
    int               rc;

    opts[0] = (parleyctl_opt_t) { "--dir", &st.dir, NULL };
    opts[1] = (parleyctl_opt_t) { NULL, NULL, NULL };

    rc = parleyctl_opts("migrate status", argc, argv, opts);
    if (rc != 0) {
        return rc < 0 ? PARLEYCTL_OK : rc;
    }

    if (load_files(&st) != 0) {
        state_free(&st);
        return PARLEYCTL_FAIL;
    }

    db = parleyctl_connect(0);
    if (db == NULL) {
        state_free(&st);
        return PARLEYCTL_FAIL;
    }
    rc = load_rows(&st, db, 1);
    mysql_close(db);
    if (rc != 0) {
        state_free(&st);
        return PARLEYCTL_FAIL;
    }

    printf("%-8s %-8s %-23s %s\n", "VERSION", "STATE", "APPLIED_AT_UTC",
           "FILE");

    /* merge the two lists, both sorted by version */
    while (i < st.nfiles || j < st.nrows) {
        f = i < st.nfiles ? &st.files[i] : NULL;
        r = j < st.nrows ? &st.rows[j] : NULL;

        if (f && r && f->m.version == r->version) {
            state = strcmp(f->checksum, r->checksum) == 0 ? "applied"
                                                          : "changed";
            i++;
            j++;
        } else if (f && (r == NULL || f->m.version < r->version)) {
            state = "pending";
            r = NULL;
            i++;
        } else {
            state = "missing";
            f = NULL;
            j++;
        }

        if (f == NULL) {
            snprintf(missing, sizeof(missing), "(no file; applied as %s)",
                     r->name);
        }
        snprintf(version, sizeof(version), "%04" PRIu64,
                 f ? f->m.version : r->version);
        printf("%-8s %-8s %-23s %s\n", version, state,
               r ? r->applied_at : "-", f ? f->m.file : missing);

        pending += state[0] == 'p';
        bad += state[0] == 'c' || state[0] == 'm';
    }

    printf("status: %zu applied, %zu pending, %zu changed or missing\n",
           st.nrows, pending, bad);
    state_free(&st);

    if (bad) {
        return parleyctl_fail("migrate status: %zu applied migration%s changed "
                              "or missing",
                              bad, bad == 1 ? "" : "s");
    }
    return PARLEYCTL_OK;
}

int parleyctl_migrate(int argc, char **argv)
{
    mig_state_t     st = { DEFAULT_DIR, NULL, 0, NULL, 0 };
    parleyctl_opt_t opts[3];
    size_t         *counts = NULL, i, applied = 0, current = 0;
    int             create_db = 0, rc;
    MYSQL          *db = NULL;

    if (argc > 0 && strcmp(argv[0], "status") == 0) {
        return migrate_status(argc - 1, argv + 1);
    }

    opts[0] = (parleyctl_opt_t) { "--dir", &st.dir, NULL };
    opts[1] = (parleyctl_opt_t) { "--create-db", NULL, &create_db };
    opts[2] = (parleyctl_opt_t) { NULL, NULL, NULL };

    rc = parleyctl_opts("migrate", argc, argv, opts);
    if (rc != 0) {
        return rc < 0 ? PARLEYCTL_OK : rc;
    }

    rc = PARLEYCTL_FAIL;

    if (load_files(&st) != 0) {
        goto done;
    }

    db = parleyctl_connect(create_db);
    if (db == NULL) {
        goto done;
    }

    if (load_rows(&st, db, 1) != 0) {
        goto done;
    }

    /* everything that can be checked is checked before the first change */
    if (check_drift(&st) != 0) {
        parleyctl_fail("migrate: nothing applied");
        goto done;
    }

    counts = parleyctl_alloc(st.nfiles * sizeof(*counts));
    for (i = 0; i < st.nfiles; i++) {
        if (find_row(&st, st.files[i].m.version) == NULL
            && count_statements(&st, &st.files[i], &counts[i]) != 0)
        {
            parleyctl_fail("migrate: nothing applied");
            goto done;
        }
    }

    if (parleyctl_exec(db, create_table_sql, sizeof(create_table_sql) - 1,
                       "migrate: create schema_migrations")
        != 0)
    {
        goto done;
    }

    for (i = 0; i < st.nfiles; i++) {
        if (find_row(&st, st.files[i].m.version)) {
            current++;
            continue;
        }
        if (apply(&st, db, &st.files[i], counts[i]) != 0) {
            printf("migrations: %zu applied, %zu already current, failed at "
                   "%s\n",
                   applied, current, st.files[i].m.file);
            goto done;
        }
        applied++;
        printf("applied %s (%zu statement%s)\n", st.files[i].m.file, counts[i],
               counts[i] == 1 ? "" : "s");
        fflush(stdout);
    }

    printf("migrations: %zu applied, %zu already current\n", applied, current);
    rc = PARLEYCTL_OK;

done:
    if (db) {
        mysql_close(db);
    }
    free(counts);
    state_free(&st);
    return rc;
}
