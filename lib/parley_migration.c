#include <stdlib.h>
#include <string.h>

#include "parley_migration.h"

#define SUFFIX     ".sql"
#define SUFFIX_LEN 4

parley_migration_rc_t parley_migration_parse_name(const char *file, size_t len,
                                                  parley_migration_t *m,
                                                  const char **reason)
{
    uint64_t version = 0;
    size_t   i, digits, name_start, name_end;

    *reason = NULL;

    if (len < SUFFIX_LEN || memcmp(file + len - SUFFIX_LEN, SUFFIX, SUFFIX_LEN)
        || file[0] == '.')
    {
        return PARLEY_MIGRATION_IGNORED;
    }

    if (len > PARLEY_MIGRATION_FILE_MAX) {
        *reason = "file name too long";
        return PARLEY_MIGRATION_INVALID;
    }

    for (i = 0; i < len && file[i] >= '0' && file[i] <= '9'; i++) {
        /* at most 18 digits are accumulated: no overflow */
        if (i < PARLEY_MIGRATION_VERSION_MAX) {
            version = version * 10 + (uint64_t) (file[i] - '0');
        }
    }
    digits = i;

    if (digits < PARLEY_MIGRATION_VERSION_MIN
        || digits > PARLEY_MIGRATION_VERSION_MAX)
    {
        *reason = "expected NNNN_name.sql: the version needs 4 to 18 digits";
        return PARLEY_MIGRATION_INVALID;
    }

    if (file[digits] != '_') {
        *reason = "expected NNNN_name.sql: '_' must follow the version";
        return PARLEY_MIGRATION_INVALID;
    }

    name_start = digits + 1;
    name_end = len - SUFFIX_LEN;

    if (name_start >= name_end || file[name_start] == '_') {
        *reason = "expected NNNN_name.sql: the name must start with [a-z0-9]";
        return PARLEY_MIGRATION_INVALID;
    }

    for (i = name_start; i < name_end; i++) {
        if (!((file[i] >= 'a' && file[i] <= 'z')
              || (file[i] >= '0' && file[i] <= '9') || file[i] == '_'))
        {
            *reason = "expected NNNN_name.sql: the name allows only [a-z0-9_]";
            return PARLEY_MIGRATION_INVALID;
        }
    }

    m->version = version;
    memcpy(m->file, file, len);
    m->file[len] = '\0';
    memcpy(m->name, file + name_start, name_end - name_start);
    m->name[name_end - name_start] = '\0';

    return PARLEY_MIGRATION_VALID;
}

static int compare(const void *a, const void *b)
{
    const parley_migration_t *x = a, *y = b;

    if (x->version != y->version) {
        return x->version < y->version ? -1 : 1;
    }
    return strcmp(x->file, y->file);
}

void parley_migration_sort(parley_migration_t *list, size_t n)
{
    if (n > 1) {
        qsort(list, n, sizeof(list[0]), compare);
    }
}

size_t parley_migration_find_duplicate(const parley_migration_t *sorted,
                                       size_t n)
{
    size_t i;

    for (i = 1; i < n; i++) {
        if (sorted[i].version == sorted[i - 1].version) {
            return i;
        }
    }
    return n;
}

int parley_migration_checksum(const void *content, size_t len,
                              char out_hex[PARLEY_SHA256_HEX_LEN + 1])
{
    return parley_sha256_hex(content, len, out_hex);
}
