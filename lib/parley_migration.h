/*
 * Migration files: names, order and checksums.  A migration is a file
 * NNNN_snake_name.sql in the migrations directory: a version of 4 to 18
 * decimal digits (so it fits a signed BIGINT), an underscore, a name of
 * [a-z0-9_] starting with a letter or digit, and ".sql".  Migrations apply
 * in version order; versions compare as numbers, so 0001 and 00001 are the
 * same version and a directory holding both is rejected.
 *
 * The checksum of a migration is the lowercase hex SHA-256 of the file's
 * bytes, recorded when it is applied: a later change to an applied file is
 * drift, and the migrator refuses to go on.
 */
#ifndef PARLEY_MIGRATION_H
#define PARLEY_MIGRATION_H

#include <stddef.h>
#include <stdint.h>

#include "parley_apikey.h" /* PARLEY_SHA256_HEX_LEN */

#define PARLEY_MIGRATION_FILE_MAX    255 /* NAME_MAX */
#define PARLEY_MIGRATION_VERSION_MIN 4   /* digits */
#define PARLEY_MIGRATION_VERSION_MAX 18

typedef struct {
    uint64_t version;
    char     file[PARLEY_MIGRATION_FILE_MAX + 1]; /* "0001_tenants.sql" */
    char     name[PARLEY_MIGRATION_FILE_MAX + 1]; /* "tenants" */
} parley_migration_t;

typedef enum {
    PARLEY_MIGRATION_VALID = 1,   /* a migration, *m filled in */
    PARLEY_MIGRATION_IGNORED = 0, /* not a migration: no ".sql", or hidden */
    PARLEY_MIGRATION_INVALID = -1 /* a ".sql" file with a bad name */
} parley_migration_rc_t;

/*
 * Classifies the directory entry file[0..len) (a bare file name, no '/').
 * Files not ending in ".sql" (README, editor backups such as "x.sql~") and
 * hidden files are IGNORED; any other ".sql" file must be a well-formed
 * migration, or it is INVALID and *reason says why in a few words: a
 * misnamed migration silently skipped would be a schema silently missing.
 */
parley_migration_rc_t parley_migration_parse_name(const char *file, size_t len,
                                                  parley_migration_t *m,
                                                  const char **reason);

/* Sorts by version (then by file name, so the order is total). */
void parley_migration_sort(parley_migration_t *list, size_t n);

/*
 * In a sorted list, the index of the first migration whose version equals
 * the one before it, or n when versions are unique.
 */
size_t parley_migration_find_duplicate(const parley_migration_t *sorted,
                                       size_t n);

/* Checksum of a file's content: hex SHA-256, 0 or -1 (libcrypto failed). */
int parley_migration_checksum(const void *content, size_t len,
                              char out_hex[PARLEY_SHA256_HEX_LEN + 1]);

#endif
