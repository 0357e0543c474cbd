/*
 * parleyctl tenant / apikey: tenants and their admin API keys (create,
 * list, suspend, activate, delete; create, list, revoke).
 *
 * A key is printed once, on stdout, as a shell assignment; the database
 * keeps only its SHA-256 and its 11-character prefix.  Human-readable
 * notes go to stderr, so `eval "$(parleyctl tenant create ...)"` works.
 */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mysqld_error.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "parley_apikey.h"
#include "parley_id.h"
#include "parley_json.h"
#include "parleyctl.h"

#define TEXT_MAX      128 /* tenants.name, tenant_api_keys.label: bytes */
#define DEFAULT_LABEL "admin"

typedef struct {
    char key[PARLEY_APIKEY_LEN + 1];
    char prefix[PARLEY_APIKEY_PREFIX_LEN + 1];
} issued_key_t;

/*
 * Operator-supplied text (a tenant name, a key label): min..TEXT_MAX bytes
 * of valid UTF-8, no control characters, no surrounding spaces (which make
 * two names look the same).  0, or a usage error.
 */
static int check_text(const char *what, const char *s, size_t min)
{
    const unsigned char *p = (const unsigned char *) s;
    size_t               len = strlen(s), i = 0, seq;

    if (len < min || len > TEXT_MAX) {
        return parleyctl_usage_error("%s must have %zu to %d bytes, not %zu",
                                     what, min, TEXT_MAX, len);
    }

    while (i < len) {
        seq = parley_utf8_sequence(p + i, len - i);
        if (seq == 0) {
            return parleyctl_usage_error("%s is not valid UTF-8 (byte %zu)",
                                         what, i + 1);
        }
        if (seq == 1 && (p[i] < 0x20 || p[i] == 0x7f)) {
            return parleyctl_usage_error("%s holds a control character "
                                         "(byte %zu)",
                                         what, i + 1);
        }
        i += seq;
    }

    if (len > 0 && (p[0] == ' ' || p[len - 1] == ' ')) {
        return parleyctl_usage_error("%s starts or ends with a space", what);
    }

    return 0;
}

static int init_gen(parley_id_gen_t *gen, const char *node)
{
    uint64_t n = PARLEYCTL_DEFAULT_NODE;

    if (node
        && (parley_id_parse(node, strlen(node), &n) != 0
            || n > PARLEY_ID_NODE_MAX))
    {
        return parleyctl_usage_error("--node must be 0..%u, not \"%s\"",
                                     PARLEY_ID_NODE_MAX, node);
    }

    parley_id_gen_init(gen, (uint32_t) n);
    return 0;
}

static int next_id(parley_id_gen_t *gen, uint64_t *id)
{
    struct timespec ts;
    uint64_t        ms;

    clock_gettime(CLOCK_REALTIME, &ts);
    ms = (uint64_t) ts.tv_sec * 1000 + (uint64_t) ts.tv_nsec / 1000000;

    if (parley_id_next(gen, ms, id) != PARLEY_ID_OK) {
        return parleyctl_fail("cannot mint an id: the system clock (%" PRIu64
                              " ms) is before 2025 or past 2094",
                              ms);
    }
    return 0;
}

static int parse_tenant_id(const char *s, uint64_t *id)
{
    if (s == NULL) {
        return parleyctl_usage_error("--tenant ID is required");
    }
    if (parley_id_parse(s, strlen(s), id) != 0 || *id == 0) {
        return parleyctl_usage_error("--tenant takes a decimal tenant id, not "
                                     "\"%s\"",
                                     s);
    }
    return 0;
}

/*
 * Looks up a tenant by name (name != NULL) or by id: 1 found (*id and
 * status filled), 0 not found, -1 error (printed).
 */
static int find_tenant(MYSQL *db, const char *name, uint64_t *id,
                       char status[17])
{
    parleyctl_sql_t sql;
    MYSQL_RES      *res;
    MYSQL_ROW       row;
    int             found;

    parleyctl_sql_init(&sql, db);
    parleyctl_sql_raw(&sql, "SELECT id, status FROM tenants WHERE ");
    if (name) {
        parleyctl_sql_raw(&sql, "name = ");
        parleyctl_sql_str(&sql, name, strlen(name));
    } else {
        parleyctl_sql_raw(&sql, "id = ");
        parleyctl_sql_u64(&sql, *id);
    }

    res = parleyctl_select(db, sql.data, "look up the tenant");
    parleyctl_sql_free(&sql);
    if (res == NULL) {
        return -1;
    }

    row = mysql_fetch_row(res);
    found = row != NULL;
    if (found) {
        *id = strtoull(row[0], NULL, 10);
        snprintf(status, 17, "%s", row[1] ? row[1] : "");
    }
    mysql_free_result(res);

    return found;
}

/*
 * Makes a key from 32 bytes of OpenSSL's CSPRNG and inserts its hash for
 * tenant_id.  0, or the server's error number (reported unless it is a
 * duplicate, which the caller may retry), or -1 when randomness failed.
 */
static long insert_key(MYSQL *db, parley_id_gen_t *gen, uint64_t tenant_id,
                       const char *label, issued_key_t *k)
{
    unsigned char   random[PARLEY_APIKEY_RANDOM_LEN];
    char            hash[PARLEY_SHA256_HEX_LEN + 1];
    parleyctl_sql_t sql;
    uint64_t        key_id;
    unsigned        err;

    if (next_id(gen, &key_id) != 0) {
        return -1;
    }

    if (RAND_bytes(random, sizeof(random)) != 1) {
        parleyctl_fail("RAND_bytes failed: no randomness for the key");
        return -1;
    }
    parley_apikey_format(random, k->key);
    OPENSSL_cleanse(random, sizeof(random));

    memcpy(k->prefix, k->key, PARLEY_APIKEY_PREFIX_LEN);
    k->prefix[PARLEY_APIKEY_PREFIX_LEN] = '\0';

    if (parley_apikey_hash(k->key, PARLEY_APIKEY_LEN, hash) != 0) {
        parleyctl_fail("SHA-256 failed");
        return -1;
    }

    parleyctl_sql_init(&sql, db);
    parleyctl_sql_raw(&sql, "INSERT INTO tenant_api_keys (id, tenant_id, "
                            "key_hash, key_prefix, label, created_at, "
                            "revoked_at) VALUES (");
    parleyctl_sql_u64(&sql, key_id);
    parleyctl_sql_raw(&sql, ", ");
    parleyctl_sql_u64(&sql, tenant_id);
    parleyctl_sql_raw(&sql, ", ");
    parleyctl_sql_str(&sql, hash, PARLEY_SHA256_HEX_LEN);
    parleyctl_sql_raw(&sql, ", ");
    parleyctl_sql_str(&sql, k->prefix, PARLEY_APIKEY_PREFIX_LEN);
    parleyctl_sql_raw(&sql, ", ");
    parleyctl_sql_str(&sql, label, strlen(label));
    parleyctl_sql_raw(&sql, ", UTC_TIMESTAMP(3), NULL)");

    err = parleyctl_exec(db, sql.data, sql.len, "store the API key");
    parleyctl_sql_free(&sql);

    return (long) err;
}

static void print_key(const issued_key_t *k)
{
    printf("PARLEY_API_KEY=%s\n", k->key);
}

static void wipe_key(issued_key_t *k)
{
    OPENSSL_cleanse(k->key, sizeof(k->key));
}

static unsigned exec_quiet(MYSQL *db, const char *sql)
{
    return parleyctl_exec(db, sql, strlen(sql), NULL);
}

/*
 * tenant create: the tenant and its first key in one transaction.  Names
 * are unique (uk_tenants_name), which also settles two concurrent
 * --if-absent runs: the loser's INSERT fails with a duplicate, and its
 * second attempt, in a fresh transaction, finds the winner's row.
 */
static int tenant_create(int argc, char **argv)
{
    const char     *name = NULL, *label = DEFAULT_LABEL, *node = NULL;
    int             if_absent = 0, rc, attempt, found = 0;
    char            status[17] = "";
    char            idbuf[PARLEY_ID_DEC_SIZE];
    parley_id_gen_t gen;
    parleyctl_sql_t sql;
    issued_key_t    k;
    uint64_t        tenant_id = 0;
    unsigned        err = 0;
    long            kerr;
    MYSQL          *db;
    parleyctl_opt_t opts[] = {
        { "--name", &name, NULL },
        { "--label", &label, NULL },
        { "--node", &node, NULL },
        { "--if-absent", NULL, &if_absent },
        { NULL, NULL, NULL },
    };

    rc = parleyctl_opts("tenant create", argc, argv, opts);
    if (rc != 0) {
        return rc < 0 ? PARLEYCTL_OK : rc;
    }
    if (name == NULL) {
        return parleyctl_usage_error("tenant create: --name NAME is required");
    }
    if ((rc = check_text("the tenant name", name, 1)) != 0
        || (rc = check_text("the key label", label, 0)) != 0
        || (rc = init_gen(&gen, node)) != 0)
    {
        return rc;
    }

    db = parleyctl_connect(0);
    if (db == NULL) {
        return PARLEYCTL_FAIL;
    }

    parleyctl_sql_init(&sql, db);
    rc = PARLEYCTL_FAIL;

    for (attempt = 0; attempt < 2; attempt++) {
        if (parleyctl_exec(db, "START TRANSACTION", strlen("START TRANSACTION"),
                           "start transaction"))
        {
            goto done;
        }

        tenant_id = 0;
        found = find_tenant(db, name, &tenant_id, status);
        if (found < 0) {
            goto rollback;
        }

        if (found && !if_absent) {
            parley_id_format(tenant_id, idbuf);
            parleyctl_fail("a tenant named \"%s\" exists (id %s); --if-absent "
                           "issues it a new key instead",
                           name, idbuf);
            goto rollback;
        }

        if (!found) {
            if (next_id(&gen, &tenant_id) != 0) {
                goto rollback;
            }
            parleyctl_sql_reset(&sql);
            parleyctl_sql_raw(&sql, "INSERT INTO tenants (id, name, status, "
                                    "settings, created_at, updated_at) "
                                    "VALUES (");
            parleyctl_sql_u64(&sql, tenant_id);
            parleyctl_sql_raw(&sql, ", ");
            parleyctl_sql_str(&sql, name, strlen(name));
            parleyctl_sql_raw(&sql, ", 'active', NULL, UTC_TIMESTAMP(3), "
                                    "UTC_TIMESTAMP(3))");
            err = parleyctl_exec(db, sql.data, sql.len, NULL);
            if (err == ER_DUP_ENTRY) {
                exec_quiet(db, "ROLLBACK");
                continue; /* created meanwhile: look again */
            }
            if (err) {
                parleyctl_fail("create the tenant: %s", parleyctl_db_error(db));
                goto rollback;
            }
        }

        kerr = insert_key(db, &gen, tenant_id, label, &k);
        if (kerr != 0) {
            goto rollback;
        }

        err = exec_quiet(db, "COMMIT");
        if (err == ER_DUP_ENTRY) { /* optimistic TiDB reports it here */
            wipe_key(&k);
            continue;
        }
        if (err) {
            wipe_key(&k);
            parleyctl_fail("commit: %s", parleyctl_db_error(db));
            goto done;
        }
        break;
    }

    if (attempt == 2) {
        parleyctl_fail("tenant create: \"%s\" kept colliding with concurrent "
                       "changes; run it again",
                       name);
        goto done;
    }

    parley_id_format(tenant_id, idbuf);
    printf("PARLEY_TENANT_ID=%s\n", idbuf);
    print_key(&k);
    wipe_key(&k);

    if (found) {
        fprintf(stderr,
                "parleyctl: tenant \"%s\" exists (id %s%s); issued a new key "
                "%s\n",
                name, idbuf,
                strcmp(status, "active") == 0 ? "" : ", status NOT active",
                k.prefix);
    } else {
        fprintf(stderr,
                "parleyctl: created tenant \"%s\" (id %s) with key %s; the key "
                "is shown only this once\n",
                name, idbuf, k.prefix);
    }

    rc = PARLEYCTL_OK;
    goto done;

rollback:
    exec_quiet(db, "ROLLBACK");
done:
    parleyctl_sql_free(&sql);
    mysql_close(db);
    return rc;
}

static int tenant_list(int argc, char **argv)
{
    static const char sql[] =
        "SELECT t.id, t.status,"
        " COALESCE(SUM(k.id IS NOT NULL AND k.revoked_at IS NULL), 0),"
        " COALESCE(SUM(k.revoked_at IS NOT NULL), 0), t.name"
        " FROM tenants t LEFT JOIN tenant_api_keys k ON k.tenant_id = t.id"
        " GROUP BY t.id, t.status, t.name ORDER BY t.id";
    parleyctl_opt_t opts[] = { { NULL, NULL, NULL } };
    MYSQL_RES      *res;
    MYSQL_ROW       row;
    MYSQL          *db;
    int             rc;

    rc = parleyctl_opts("tenant list", argc, argv, opts);
    if (rc != 0) {
        return rc < 0 ? PARLEYCTL_OK : rc;
    }

    db = parleyctl_connect(0);
    if (db == NULL) {
        return PARLEYCTL_FAIL;
    }

    res = parleyctl_select(db, sql, "tenant list");
    if (res == NULL) {
        mysql_close(db);
        return PARLEYCTL_FAIL;
    }

    /* the name last: it is the only column of unbounded display width */
    printf("%-20s %-10s %5s %8s  %s\n", "ID", "STATUS", "KEYS", "REVOKED",
           "NAME");
    while ((row = mysql_fetch_row(res)) != NULL) {
        printf("%-20s %-10s %5s %8s  %s\n", row[0], row[1], row[2], row[3],
               row[4]);
    }

    mysql_free_result(res);
    mysql_close(db);
    return PARLEYCTL_OK;
}

/*
 * tenant suspend / activate: a suspended tenant's keys and tokens are
 * refused (403 tenant_suspended) once the API workers' credential caches
 * expire (parley_api_cache_ttl).  Setting the status it already has is a
 * success that changes nothing.
 */
static int tenant_set_status(const char *cmd, const char *status, int argc,
                             char **argv)
{
    const char     *tenant = NULL;
    char            current[17] = "";
    parleyctl_sql_t sql;
    uint64_t        tenant_id = 0;
    MYSQL          *db;
    int             rc, found;
    parleyctl_opt_t opts[] = {
        { "--tenant", &tenant, NULL },
        { NULL, NULL, NULL },
    };

    rc = parleyctl_opts(cmd, argc, argv, opts);
    if (rc != 0) {
        return rc < 0 ? PARLEYCTL_OK : rc;
    }
    if ((rc = parse_tenant_id(tenant, &tenant_id)) != 0) {
        return rc;
    }

    db = parleyctl_connect(0);
    if (db == NULL) {
        return PARLEYCTL_FAIL;
    }

    found = find_tenant(db, NULL, &tenant_id, current);
    if (found <= 0) {
        mysql_close(db);
        return found < 0 ? PARLEYCTL_FAIL
                         : parleyctl_fail("no tenant with id %s", tenant);
    }

    if (strcmp(current, status) == 0) {
        mysql_close(db);
        fprintf(stderr, "parleyctl: tenant %s is already %s\n", tenant,
                status);
        return PARLEYCTL_OK;
    }

    parleyctl_sql_init(&sql, db);
    parleyctl_sql_raw(&sql, "UPDATE tenants SET status = ");
    parleyctl_sql_str(&sql, status, strlen(status));
    parleyctl_sql_raw(&sql, ", updated_at = UTC_TIMESTAMP(3) WHERE id = ");
    parleyctl_sql_u64(&sql, tenant_id);

    rc = parleyctl_exec(db, sql.data, sql.len, cmd) != 0 ? PARLEYCTL_FAIL
                                                         : PARLEYCTL_OK;
    parleyctl_sql_free(&sql);
    mysql_close(db);

    if (rc == PARLEYCTL_OK) {
        printf("tenant %s %s\n", tenant, status);
    }
    return rc;
}

/* a table name from information_schema, safe to put between backquotes */
static int plain_identifier(const char *s)
{
    size_t i, len = strlen(s);

    if (len == 0 || len > 64) {
        return 0;
    }
    for (i = 0; i < len; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z')
              || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
        {
            return 0;
        }
    }
    return 1;
}

#define DELETE_BATCH     1000
#define DELETE_TABLES    256
#define GRACE_DEFAULT    "5"
#define GRACE_MAX        3600

/*
 * tenant delete: the same steps as DELETE /v1/platform/tenants/{tid}.
 * Suspend, wait --grace seconds (the API's parley_api_cache_ttl, default
 * 5 s) so that no new request of the tenant starts, delete its rows from
 * every table with a tenant_id column in batches of DELETE_BATCH (each
 * statement its own small transaction: TiDB limits transaction size), then
 * the tenant row.  Stopped half-way, it can be run again.
 */
static int tenant_delete(int argc, char **argv)
{
    static const char tables_sql[] =
        "SELECT c.TABLE_NAME FROM information_schema.COLUMNS c"
        " JOIN information_schema.TABLES t ON t.TABLE_SCHEMA = c.TABLE_SCHEMA"
        " AND t.TABLE_NAME = c.TABLE_NAME WHERE c.TABLE_SCHEMA = DATABASE()"
        " AND c.COLUMN_NAME = 'tenant_id' AND t.TABLE_TYPE = 'BASE TABLE'"
        " AND c.TABLE_NAME <> 'tenants'"
        " ORDER BY c.TABLE_NAME <> 'tenant_api_keys', c.TABLE_NAME = 'outbox',"
        " c.TABLE_NAME";
    const char     *tenant = NULL, *grace = GRACE_DEFAULT;
    char            status[17] = "", num[PARLEY_ID_DEC_SIZE];
    char           *tables[DELETE_TABLES];
    size_t          ntables = 0, i;
    parleyctl_sql_t sql;
    uint64_t        tenant_id = 0, wait_s = 0, rows = 0, n;
    MYSQL_RES      *res;
    MYSQL_ROW       row;
    MYSQL          *db;
    int             rc, found;
    struct timespec ts;
    parleyctl_opt_t opts[] = {
        { "--tenant", &tenant, NULL },
        { "--grace", &grace, NULL },
        { NULL, NULL, NULL },
    };

    rc = parleyctl_opts("tenant delete", argc, argv, opts);
    if (rc != 0) {
        return rc < 0 ? PARLEYCTL_OK : rc;
    }
    if ((rc = parse_tenant_id(tenant, &tenant_id)) != 0) {
        return rc;
    }
    if (parley_id_parse(grace, strlen(grace), &wait_s) != 0
        || wait_s > GRACE_MAX)
    {
        return parleyctl_usage_error("--grace takes seconds, 0..%d, not "
                                     "\"%s\"",
                                     GRACE_MAX, grace);
    }

    db = parleyctl_connect(0);
    if (db == NULL) {
        return PARLEYCTL_FAIL;
    }

    parleyctl_sql_init(&sql, db);
    rc = PARLEYCTL_FAIL;

    found = find_tenant(db, NULL, &tenant_id, status);
    if (found <= 0) {
        if (found == 0) {
            parleyctl_fail("no tenant with id %s", tenant);
        }
        goto done;
    }

    if (strcmp(status, "suspended") != 0) {
        parleyctl_sql_raw(&sql, "UPDATE tenants SET status = 'suspended', "
                                "updated_at = UTC_TIMESTAMP(3) WHERE id = ");
        parleyctl_sql_u64(&sql, tenant_id);
        if (parleyctl_exec(db, sql.data, sql.len, "suspend the tenant") != 0) {
            goto done;
        }
        fprintf(stderr, "parleyctl: tenant %s suspended\n", tenant);
    }

    if (wait_s) {
        fprintf(stderr,
                "parleyctl: waiting %" PRIu64 " s for the API caches to "
                "drop its credentials\n",
                wait_s);
        ts.tv_sec = (time_t) wait_s;
        ts.tv_nsec = 0;
        while (nanosleep(&ts, &ts) != 0) { /* EINTR: sleep the rest */
        }
    }

    res = parleyctl_select(db, tables_sql, "list the tenant's tables");
    if (res == NULL) {
        goto done;
    }
    while ((row = mysql_fetch_row(res)) != NULL) {
        if (row[0] == NULL || !plain_identifier(row[0])
            || ntables == DELETE_TABLES)
        {
            mysql_free_result(res);
            parleyctl_fail("cannot clear table \"%s\"",
                           row[0] ? row[0] : "");
            goto free_tables;
        }
        tables[ntables] = parleyctl_alloc(strlen(row[0]) + 1);
        memcpy(tables[ntables], row[0], strlen(row[0]) + 1);
        ntables++;
    }
    mysql_free_result(res);

    for (i = 0; i < ntables; i++) {
        do {
            parleyctl_sql_reset(&sql);
            parleyctl_sql_raw(&sql, "DELETE FROM `");
            parleyctl_sql_raw(&sql, tables[i]);
            parleyctl_sql_raw(&sql, "` WHERE tenant_id = ");
            parleyctl_sql_u64(&sql, tenant_id);
            if (strcmp(tables[i], "outbox") == 0) {
                /* once deleted, the outbox holds the API's tenant.deleted */
                parleyctl_sql_raw(&sql, " AND EXISTS (SELECT 1 FROM tenants "
                                        "WHERE id = ");
                parleyctl_sql_u64(&sql, tenant_id);
                parleyctl_sql_raw(&sql, ")");
            }
            parleyctl_sql_raw(&sql, " LIMIT ");
            parleyctl_sql_u64(&sql, DELETE_BATCH);

            if (parleyctl_exec(db, sql.data, sql.len, tables[i]) != 0) {
                fprintf(stderr,
                        "parleyctl: tenant %s is suspended and partly "
                        "deleted; run tenant delete again\n",
                        tenant);
                goto free_tables;
            }
            n = mysql_affected_rows(db);
            rows += n;
        } while (n == DELETE_BATCH);
    }

    parleyctl_sql_reset(&sql);
    parleyctl_sql_raw(&sql, "DELETE FROM tenants WHERE id = ");
    parleyctl_sql_u64(&sql, tenant_id);
    if (parleyctl_exec(db, sql.data, sql.len, "delete the tenant") != 0) {
        goto free_tables;
    }

    parley_id_format(tenant_id, num);
    printf("deleted tenant %s and %" PRIu64 " rows of its data\n", num, rows);
    rc = PARLEYCTL_OK;

free_tables:
    for (i = 0; i < ntables; i++) {
        free(tables[i]);
    }
done:
    parleyctl_sql_free(&sql);
    mysql_close(db);
    return rc;
}

int parleyctl_tenant(int argc, char **argv)
{
    if (argc > 0 && strcmp(argv[0], "create") == 0) {
        return tenant_create(argc - 1, argv + 1);
    }
    if (argc > 0 && strcmp(argv[0], "list") == 0) {
        return tenant_list(argc - 1, argv + 1);
    }
    if (argc > 0 && strcmp(argv[0], "suspend") == 0) {
        return tenant_set_status("tenant suspend", "suspended", argc - 1,
                                 argv + 1);
    }
    if (argc > 0 && strcmp(argv[0], "activate") == 0) {
        return tenant_set_status("tenant activate", "active", argc - 1,
                                 argv + 1);
    }
    if (argc > 0 && strcmp(argv[0], "delete") == 0) {
        return tenant_delete(argc - 1, argv + 1);
    }
    if (argc > 0 && (strcmp(argv[0], "--help") == 0)) {
        parleyctl_print_usage(stdout);
        return PARLEYCTL_OK;
    }
    return parleyctl_usage_error("tenant: expected \"create\", \"list\", "
                                 "\"suspend\", \"activate\" or \"delete\"");
}

static int apikey_create(int argc, char **argv)
{
    const char     *tenant = NULL, *label = DEFAULT_LABEL, *node = NULL;
    char            status[17] = "";
    parley_id_gen_t gen;
    issued_key_t    k;
    uint64_t        tenant_id = 0;
    MYSQL          *db;
    int             rc, found;
    parleyctl_opt_t opts[] = {
        { "--tenant", &tenant, NULL },
        { "--label", &label, NULL },
        { "--node", &node, NULL },
        { NULL, NULL, NULL },
    };

    rc = parleyctl_opts("apikey create", argc, argv, opts);
    if (rc != 0) {
        return rc < 0 ? PARLEYCTL_OK : rc;
    }
    if ((rc = parse_tenant_id(tenant, &tenant_id)) != 0
        || (rc = check_text("the key label", label, 0)) != 0
        || (rc = init_gen(&gen, node)) != 0)
    {
        return rc;
    }

    db = parleyctl_connect(0);
    if (db == NULL) {
        return PARLEYCTL_FAIL;
    }

    found = find_tenant(db, NULL, &tenant_id, status);
    if (found <= 0) {
        mysql_close(db);
        return found < 0 ? PARLEYCTL_FAIL
                         : parleyctl_fail("no tenant with id %s", tenant);
    }

    if (insert_key(db, &gen, tenant_id, label, &k) != 0) {
        mysql_close(db);
        return PARLEYCTL_FAIL;
    }
    mysql_close(db);

    print_key(&k);
    wipe_key(&k);
    fprintf(stderr,
            "parleyctl: issued key %s for tenant %s%s; the key is shown only "
            "this once\n",
            k.prefix, tenant,
            strcmp(status, "active") == 0 ? "" : " (tenant NOT active)");

    return PARLEYCTL_OK;
}

/*
 * apikey revoke: marks the tenant's key with that prefix revoked.  Revoking
 * a revoked key is a success that changes nothing; a prefix matching two
 * live keys (48 random bits: never in practice) revokes neither.
 */
static int apikey_revoke(int argc, char **argv)
{
    const char     *tenant = NULL, *prefix = NULL;
    char            revoked_at[32] = "";
    parleyctl_sql_t sql;
    uint64_t        tenant_id = 0, key_id = 0;
    MYSQL_RES      *res;
    MYSQL_ROW       row;
    MYSQL          *db;
    size_t          live = 0, dead = 0;
    int             rc;
    parleyctl_opt_t opts[] = {
        { "--tenant", &tenant, NULL },
        { "--prefix", &prefix, NULL },
        { NULL, NULL, NULL },
    };

    rc = parleyctl_opts("apikey revoke", argc, argv, opts);
    if (rc != 0) {
        return rc < 0 ? PARLEYCTL_OK : rc;
    }
    if ((rc = parse_tenant_id(tenant, &tenant_id)) != 0) {
        return rc;
    }
    if (prefix == NULL) {
        return parleyctl_usage_error("apikey revoke: --prefix PREFIX is "
                                     "required");
    }
    if (parley_apikey_prefix_parse(prefix, strlen(prefix)) != 0) {
        return parleyctl_usage_error("--prefix takes the first %d characters "
                                     "of a key (pk_ and 8 more), as tenant "
                                     "create printed them",
                                     PARLEY_APIKEY_PREFIX_LEN);
    }

    db = parleyctl_connect(0);
    if (db == NULL) {
        return PARLEYCTL_FAIL;
    }

    parleyctl_sql_init(&sql, db);
    parleyctl_sql_raw(&sql, "SELECT id, revoked_at FROM tenant_api_keys"
                            " WHERE tenant_id = ");
    parleyctl_sql_u64(&sql, tenant_id);
    parleyctl_sql_raw(&sql, " AND key_prefix = ");
    parleyctl_sql_str(&sql, prefix, strlen(prefix));

    res = parleyctl_select(db, sql.data, "apikey revoke");
    if (res == NULL) {
        rc = PARLEYCTL_FAIL;
        goto done;
    }
    while ((row = mysql_fetch_row(res)) != NULL) {
        if (row[1] == NULL) {
            live++;
            key_id = strtoull(row[0], NULL, 10);
        } else {
            dead++;
            snprintf(revoked_at, sizeof(revoked_at), "%s", row[1]);
        }
    }
    mysql_free_result(res);

    if (live == 0) {
        if (dead) {
            fprintf(stderr,
                    "parleyctl: key %s of tenant %s was already revoked at %s "
                    "UTC\n",
                    prefix, tenant, revoked_at);
            rc = PARLEYCTL_OK;
        } else {
            rc = parleyctl_fail("tenant %s has no key %s", tenant, prefix);
        }
        goto done;
    }
    if (live > 1) {
        rc = parleyctl_fail("tenant %s has %zu live keys starting %s: revoke "
                            "nothing; rotate them all",
                            tenant, live, prefix);
        goto done;
    }

    parleyctl_sql_reset(&sql);
    parleyctl_sql_raw(&sql, "UPDATE tenant_api_keys SET revoked_at = "
                            "UTC_TIMESTAMP(3) WHERE id = ");
    parleyctl_sql_u64(&sql, key_id);
    parleyctl_sql_raw(&sql, " AND tenant_id = ");
    parleyctl_sql_u64(&sql, tenant_id);
    parleyctl_sql_raw(&sql, " AND revoked_at IS NULL");

    if (parleyctl_exec(db, sql.data, sql.len, "apikey revoke") != 0) {
        rc = PARLEYCTL_FAIL;
        goto done;
    }

    printf("revoked %s (tenant %s)\n", prefix, tenant);
    rc = PARLEYCTL_OK;

done:
    parleyctl_sql_free(&sql);
    mysql_close(db);
    return rc;
}

/* apikey list: a tenant's keys by prefix, never their hashes */
static int apikey_list(int argc, char **argv)
{
    const char     *tenant = NULL;
    char            status[17] = "";
    parleyctl_sql_t sql;
    uint64_t        tenant_id = 0;
    MYSQL_RES      *res;
    MYSQL_ROW       row;
    MYSQL          *db;
    int             rc, found;
    parleyctl_opt_t opts[] = {
        { "--tenant", &tenant, NULL },
        { NULL, NULL, NULL },
    };

    rc = parleyctl_opts("apikey list", argc, argv, opts);
    if (rc != 0) {
        return rc < 0 ? PARLEYCTL_OK : rc;
    }
    if ((rc = parse_tenant_id(tenant, &tenant_id)) != 0) {
        return rc;
    }

    db = parleyctl_connect(0);
    if (db == NULL) {
        return PARLEYCTL_FAIL;
    }

    found = find_tenant(db, NULL, &tenant_id, status);
    if (found <= 0) {
        mysql_close(db);
        return found < 0 ? PARLEYCTL_FAIL
                         : parleyctl_fail("no tenant with id %s", tenant);
    }

    parleyctl_sql_init(&sql, db);
    parleyctl_sql_raw(&sql, "SELECT key_prefix, created_at,"
                            " COALESCE(revoked_at, '-'), label"
                            " FROM tenant_api_keys WHERE tenant_id = ");
    parleyctl_sql_u64(&sql, tenant_id);
    parleyctl_sql_raw(&sql, " ORDER BY id");

    res = parleyctl_select(db, sql.data, "apikey list");
    parleyctl_sql_free(&sql);
    if (res == NULL) {
        mysql_close(db);
        return PARLEYCTL_FAIL;
    }

    /* the label last: it is the only column of unbounded display width */
    printf("%-11s  %-23s  %-23s  %s\n", "PREFIX", "CREATED (UTC)",
           "REVOKED (UTC)", "LABEL");
    while ((row = mysql_fetch_row(res)) != NULL) {
        printf("%-11s  %-23s  %-23s  %s\n", row[0], row[1], row[2], row[3]);
    }

    mysql_free_result(res);
    mysql_close(db);
    return PARLEYCTL_OK;
}

int parleyctl_apikey(int argc, char **argv)
{
    if (argc > 0 && strcmp(argv[0], "create") == 0) {
        return apikey_create(argc - 1, argv + 1);
    }
    if (argc > 0 && strcmp(argv[0], "revoke") == 0) {
        return apikey_revoke(argc - 1, argv + 1);
    }
    if (argc > 0 && strcmp(argv[0], "list") == 0) {
        return apikey_list(argc - 1, argv + 1);
    }
    if (argc > 0 && (strcmp(argv[0], "--help") == 0)) {
        parleyctl_print_usage(stdout);
        return PARLEYCTL_OK;
    }
    return parleyctl_usage_error("apikey: expected \"create\", \"revoke\" "
                                 "or \"list\"");
}
