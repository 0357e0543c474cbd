/*
 * parleyctl: the operator's command-line tool (migrations, tenants, API
 * keys).  A CLI may block, so it uses mariadb-connector-c's blocking API;
 * everything it decides is in lib/ (ids, keys, SQL splitting, migration
 * names), this directory only wires that to the database and the terminal.
 *
 * Exit status: 0 success, 1 failure (message on stderr), 2 usage error.
 */
#ifndef PARLEYCTL_H
#define PARLEYCTL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <mysql.h>

#define PARLEYCTL_OK    0
#define PARLEYCTL_FAIL  1
#define PARLEYCTL_USAGE 2

/* the node id parleyctl mints ids with unless --node says otherwise */
#define PARLEYCTL_DEFAULT_NODE 1023

/* ---- command line (main.c) ---- */

/* one option of a command: a flag (value == NULL) or "--name VALUE" */
typedef struct {
    const char  *name;
    const char **value;
    int         *flag;
} parleyctl_opt_t;

/*
 * Parses argv[0..argc) against opts (ended by a NULL name), accepting
 * "--name VALUE" and "--name=VALUE"; "--db URL" and "--help" are known to
 * every command.  On a usage error prints why and returns PARLEYCTL_USAGE;
 * on --help prints the usage and returns -1; else 0.
 */
int parleyctl_opts(const char *cmd, int argc, char **argv,
                   const parleyctl_opt_t *opts);

/* "parleyctl: " + message + newline on stderr; returns PARLEYCTL_FAIL */
int parleyctl_fail(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));
int parleyctl_usage_error(const char *fmt, ...)
    __attribute__((format(printf, 1, 2)));

/* aborting allocators: a CLI has nothing better to do without memory */
void *parleyctl_alloc(size_t n);
void *parleyctl_realloc(void *p, size_t n);

/* the --db value given to any command, or NULL */
extern const char *parleyctl_db_url;

/* ---- database (db.c) ---- */

typedef struct {
    char     user[128];
    char     password[256];
    char     host[256];
    char     dbname[65];
    char     socket[108]; /* sun_path */
    unsigned port;        /* 0: the client's default */
} parleyctl_url_t;

/*
 * Parses mysql://user[:password]@host[:port]/dbname[?socket=/path]
 * ("mariadb://" also accepted; user, password and socket percent-decoded;
 * host may be [IPv6]; dbname [A-Za-z0-9_-]{1,64}).  0, or -1 with *error.
 */
int parleyctl_url_parse(const char *url, parleyctl_url_t *u,
                        const char **error);

/*
 * Connects to the database named by --db or PARLEY_DB_URL, in utf8mb4, with
 * the session in UTC.  create_db: first CREATE DATABASE IF NOT EXISTS.
 * NULL after printing why.
 */
MYSQL *parleyctl_connect(int create_db);

/*
 * Runs one statement and discards any result.  0, or the server's error
 * number after printing "parleyctl: <what>: ..." unless what is NULL
 * (the caller reports it, e.g. with statement numbers).
 */
unsigned parleyctl_exec(MYSQL *db, const char *sql, size_t len,
                        const char *what);

/* Runs a query and stores its result; NULL after printing the error. */
MYSQL_RES *parleyctl_select(MYSQL *db, const char *sql, const char *what);

/* "server error N (SQLSTATE S): message" of the last failure, static */
const char *parleyctl_db_error(MYSQL *db);

/* growing SQL text, every value escaped by the server's rules */
typedef struct {
    MYSQL *db;
    char  *data; /* NUL-terminated */
    size_t len;
    size_t cap;
} parleyctl_sql_t;

void parleyctl_sql_init(parleyctl_sql_t *sql, MYSQL *db);
void parleyctl_sql_reset(parleyctl_sql_t *sql);
void parleyctl_sql_free(parleyctl_sql_t *sql);
void parleyctl_sql_raw(parleyctl_sql_t *sql, const char *text);
/* a quoted string literal, escaped with mysql_real_escape_string */
void parleyctl_sql_str(parleyctl_sql_t *sql, const char *s, size_t len);
void parleyctl_sql_u64(parleyctl_sql_t *sql, uint64_t v);

/* ---- commands ---- */

int parleyctl_migrate(int argc, char **argv);
int parleyctl_tenant(int argc, char **argv);
int parleyctl_apikey(int argc, char **argv);

void parleyctl_print_usage(FILE *out);

#endif
