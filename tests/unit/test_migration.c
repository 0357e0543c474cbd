#include <criterion/criterion.h>
#include <string.h>

#include "parley_migration.h"

static parley_migration_rc_t parse(const char *file, parley_migration_t *m,
                                   const char **reason)
{
    return parley_migration_parse_name(file, strlen(file), m, reason);
}

Test(migration, valid_names)
{
    static const struct {
        const char *file;
        uint64_t    version;
        const char *name;
    } ok[] = {
        { "0001_tenants.sql", 1, "tenants" },
        { "0042_add_index_2.sql", 42, "add_index_2" },
        { "20250601120000_big_version.sql", 20250601120000ULL, "big_version" },
        { "999999999999999999_max.sql", 999999999999999999ULL, "max" },
        { "0000_zero.sql", 0, "zero" },
        { "0007_9lives.sql", 7, "9lives" },
        { "0008_x_.sql", 8, "x_" },
    };
    parley_migration_t m;
    const char        *reason;
    size_t             i;

    for (i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        cr_assert_eq(parse(ok[i].file, &m, &reason), PARLEY_MIGRATION_VALID,
                     "%s: %s", ok[i].file, reason ? reason : "");
        cr_assert_eq(m.version, ok[i].version, "%s", ok[i].file);
        cr_assert_str_eq(m.name, ok[i].name);
        cr_assert_str_eq(m.file, ok[i].file);
        cr_assert_null(reason);
    }
}

Test(migration, ignored_names)
{
    static const char *ignored[] = {
        "", "README.md", "0001_tenants.sql~", "0001_tenants.sql.orig",
        ".0001_tenants.sql.swp", ".0001_tenants.sql", "sql", ".sql",
        "0001_tenants.SQL",
    };
    parley_migration_t m;
    const char        *reason;
    size_t             i;

    for (i = 0; i < sizeof(ignored) / sizeof(ignored[0]); i++) {
        cr_assert_eq(parse(ignored[i], &m, &reason), PARLEY_MIGRATION_IGNORED,
                     "\"%s\"", ignored[i]);
    }
}

Test(migration, invalid_names)
{
    static const char *bad[] = {
        "1_short.sql",          /* fewer than 4 digits */
        "001_short.sql",
        "1234567890123456789_too_long.sql", /* 19 digits */
        "tenants.sql",          /* no version */
        "0001tenants.sql",      /* no underscore */
        "0001-tenants.sql",
        "0001.sql",
        "0001_.sql",            /* empty name */
        "0001__double.sql",     /* name starts with '_' */
        "0001_Tenants.sql",     /* upper case */
        "0001_ten-ants.sql",
        "0001_ten ants.sql",
        "0001_a.b.sql",
        "0001_a.sql.sql",
        "0001_\xc3\xa9.sql",    /* non-ASCII */
        "v0001_tenants.sql",
    };
    parley_migration_t m;
    const char        *reason;
    size_t             i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        reason = NULL;
        cr_assert_eq(parse(bad[i], &m, &reason), PARLEY_MIGRATION_INVALID,
                     "accepted \"%s\"", bad[i]);
        cr_assert_not_null(reason, "no reason for \"%s\"", bad[i]);
    }
}

Test(migration, invalid_long_name_and_embedded_nul)
{
    char               file[300];
    parley_migration_t m;
    const char        *reason;

    memset(file, 'a', sizeof(file));
    memcpy(file, "0001_", 5);
    memcpy(file + 256 - 4, ".sql", 4);
    cr_assert_eq(parley_migration_parse_name(file, 256, &m, &reason),
                 PARLEY_MIGRATION_INVALID);

    memcpy(file + 255 - 4, ".sql", 4); /* 255 bytes: the longest allowed */
    cr_assert_eq(parley_migration_parse_name(file, 255, &m, &reason),
                 PARLEY_MIGRATION_VALID);
    cr_assert_eq(strlen(m.file), 255);

    cr_assert_eq(parley_migration_parse_name("0001_a\0b.sql", 12, &m, &reason),
                 PARLEY_MIGRATION_INVALID);
}

static void add(parley_migration_t *list, size_t *n, const char *file)
{
    const char *reason;

    cr_assert_eq(parse(file, &list[*n], &reason), PARLEY_MIGRATION_VALID);
    (*n)++;
}

Test(migration, sort_by_numeric_version)
{
    parley_migration_t list[6];
    size_t             n = 0;

    add(list, &n, "0010_ten.sql");
    add(list, &n, "0002_two.sql");
    add(list, &n, "20250101000000_stamp.sql");
    add(list, &n, "0001_one.sql");
    add(list, &n, "00003_three.sql"); /* 5 digits still sorts as 3 */
    add(list, &n, "0100_hundred.sql");

    parley_migration_sort(list, n);

    cr_assert_str_eq(list[0].file, "0001_one.sql");
    cr_assert_str_eq(list[1].file, "0002_two.sql");
    cr_assert_str_eq(list[2].file, "00003_three.sql");
    cr_assert_str_eq(list[3].file, "0010_ten.sql");
    cr_assert_str_eq(list[4].file, "0100_hundred.sql");
    cr_assert_str_eq(list[5].file, "20250101000000_stamp.sql");
    cr_assert_eq(parley_migration_find_duplicate(list, n), n);

    parley_migration_sort(list, 0); /* no-op, no crash */
    cr_assert_eq(parley_migration_find_duplicate(list, 0), 0);
    cr_assert_eq(parley_migration_find_duplicate(list, 1), 1);
}

Test(migration, duplicate_versions)
{
    parley_migration_t list[4];
    size_t             n = 0, dup;

    add(list, &n, "0003_c.sql");
    add(list, &n, "0001_a.sql");
    add(list, &n, "00003_also_three.sql");
    add(list, &n, "0002_b.sql");

    parley_migration_sort(list, n);
    dup = parley_migration_find_duplicate(list, n);

    cr_assert_eq(dup, 3);
    cr_assert_eq(list[dup].version, 3);
    cr_assert_eq(list[dup - 1].version, 3);
    /* tie broken by file name, so the report is the same on every run */
    cr_assert_str_eq(list[dup - 1].file, "00003_also_three.sql");
    cr_assert_str_eq(list[dup].file, "0003_c.sql");
}

Test(migration, checksum_is_sha256_of_content)
{
    char        hex[PARLEY_SHA256_HEX_LEN + 1];
    const char *sql = "CREATE TABLE t (a INT);\n";

    /* printf 'CREATE TABLE t (a INT);\n' | sha256sum */
    cr_assert_eq(parley_migration_checksum(sql, strlen(sql), hex), 0);
    cr_assert_str_eq(
        hex, "868a521abd1d894269f8d12fe762d9bafa962ea45433163cc6326d807735573f");

    /* one byte more is drift */
    cr_assert_eq(parley_migration_checksum("CREATE TABLE t (a INT); \n",
                                           strlen(sql) + 1, hex),
                 0);
    cr_assert_str_neq(
        hex, "868a521abd1d894269f8d12fe762d9bafa962ea45433163cc6326d807735573f");
}
