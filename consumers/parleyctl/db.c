/*
 * Database plumbing for parleyctl: the connection URL, connecting, running
 * statements, and building SQL text with every value escaped by the
 * connection (mysql_real_escape_string honours the session's charset and
 * NO_BACKSLASH_ESCAPES).
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <errmsg.h>
#include <mysqld_error.h>

#include "parleyctl.h"

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/*
 * Percent-decodes s[0..len) into out (size bytes with the NUL); -1 when it
 * does not fit, holds a bad escape, or decodes to a NUL.
 */
static int decode(const char *s, size_t len, char *out, size_t size)
{
    size_t i, n = 0;
    int    hi, lo;

    for (i = 0; i < len; i++) {
        if (n + 1 >= size) {
            return -1;
        }
        if (s[i] != '%') {
            out[n++] = s[i];
            continue;
        }
        if (i + 2 >= len) {
            return -1;
        }
        hi = hex_value(s[i + 1]);
        lo = hex_value(s[i + 2]);
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            return -1;
        }
        out[n++] = (char) (hi << 4 | lo);
        i += 2;
    }

    out[n] = '\0';
    return 0;
}

int parleyctl_url_parse(const char *url, parleyctl_url_t *u,
                        const char **error)
{
    const char *p, *auth_end, *at, *colon, *host, *host_end, *q, *db_end;
    size_t      n;
    unsigned    port;

    memset(u, 0, sizeof(*u));

    if (strncmp(url, "mysql://", 8) == 0) {
        p = url + 8;
    } else if (strncmp(url, "mariadb://", 10) == 0) {
        p = url + 10;
    } else {
        *error = "the URL must start with mysql://";
        return -1;
    }

    auth_end = p + strcspn(p, "/?#");

    /* user[:password]@ — the last '@' ends it, so a raw '@' in a password
       still works */
    at = NULL;
    for (q = p; q < auth_end; q++) {
        if (*q == '@') {
            at = q;
        }
    }
    if (at == NULL) {
        *error = "the URL needs a user: mysql://user:password@host/dbname";
        return -1;
    }

    colon = memchr(p, ':', (size_t) (at - p));
    n = (size_t) ((colon ? colon : at) - p);
    if (n == 0 || decode(p, n, u->user, sizeof(u->user)) != 0) {
        *error = "bad or empty user in the URL";
        return -1;
    }
    if (colon
        && decode(colon + 1, (size_t) (at - colon - 1), u->password,
                  sizeof(u->password))
               != 0)
    {
        *error = "bad password in the URL (percent-encode reserved characters)";
        return -1;
    }

    host = at + 1;
    if (*host == '[') {
        host_end = memchr(host, ']', (size_t) (auth_end - host));
        if (host_end == NULL) {
            *error = "unclosed [ in the URL's host";
            return -1;
        }
        host++;
        p = host_end + 1;
    } else {
        host_end = memchr(host, ':', (size_t) (auth_end - host));
        if (host_end == NULL) {
            host_end = auth_end;
        }
        p = host_end;
    }

    n = (size_t) (host_end - host);
    if (n == 0 || n >= sizeof(u->host)) {
        *error = "bad or empty host in the URL";
        return -1;
    }
    memcpy(u->host, host, n);

    if (p < auth_end) {
        if (*p != ':' || p + 1 == auth_end) {
            *error = "bad port in the URL";
            return -1;
        }
        port = 0;
        for (p++; p < auth_end; p++) {
            if (*p < '0' || *p > '9' || port > 6553) {
                *error = "bad port in the URL";
                return -1;
            }
            port = port * 10 + (unsigned) (*p - '0');
        }
        if (port == 0 || port > 65535) {
            *error = "bad port in the URL";
            return -1;
        }
        u->port = port;
    }

    if (*p != '/') {
        *error = "the URL needs a database: mysql://user@host/dbname";
        return -1;
    }
    p++;
    db_end = p + strcspn(p, "?#");
    n = (size_t) (db_end - p);
    if (n == 0 || n >= sizeof(u->dbname)) {
        *error = "the database name in the URL must have 1 to 64 characters";
        return -1;
    }
    for (q = p; q < db_end; q++) {
        if (!((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z')
              || (*q >= '0' && *q <= '9') || *q == '_' || *q == '-'))
        {
            *error = "the database name in the URL allows only [A-Za-z0-9_-]";
            return -1;
        }
    }
    memcpy(u->dbname, p, n);
    p = db_end;

    if (*p == '#') {
        *error = "unexpected # in the URL";
        return -1;
    }

    if (*p == '?') {
        p++;
        while (*p) {
            const char *param_end = p + strcspn(p, "&");

            if (strncmp(p, "socket=", 7) != 0) {
                *error = "unknown URL parameter (only socket= is known)";
                return -1;
            }
            if (param_end == p + 7
                || decode(p + 7, (size_t) (param_end - p - 7), u->socket,
                          sizeof(u->socket))
                       != 0)
            {
                *error = "bad socket path in the URL";
                return -1;
            }
            p = *param_end ? param_end + 1 : param_end;
        }

        if (u->socket[0] && strcmp(u->host, "localhost") != 0) {
            *error = "?socket= needs the host localhost";
            return -1;
        }
    }

    return 0;
}

const char *parleyctl_db_error(MYSQL *db)
{
    static char buf[1024];

    snprintf(buf, sizeof(buf), "server error %u (SQLSTATE %s): %s",
             mysql_errno(db), mysql_sqlstate(db), mysql_error(db));
    return buf;
}

MYSQL *parleyctl_connect(int create_db)
{
    static const char set_utc[] = "SET time_zone = '+00:00'";
    parleyctl_url_t u;
    parleyctl_sql_t sql;
    const char     *url, *error;
    unsigned        timeout = 10;
    char            port[16] = "";
    MYSQL          *db;

    url = parleyctl_db_url ? parleyctl_db_url : getenv("PARLEY_DB_URL");
    if (url == NULL || *url == '\0') {
        parleyctl_fail("no database: pass --db URL or set PARLEY_DB_URL "
                       "(mysql://user:password@host:port/dbname)");
        return NULL;
    }

    if (parleyctl_url_parse(url, &u, &error) != 0) {
        parleyctl_fail("bad database URL: %s", error);
        return NULL;
    }

    db = mysql_init(NULL);
    if (db == NULL) {
        parleyctl_fail("out of memory");
        return NULL;
    }

    mysql_options(db, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    mysql_options(db, MYSQL_OPT_CONNECT_TIMEOUT, &timeout);

    if (mysql_real_connect(db, u.host, u.user, u.password[0] ? u.password : NULL,
                           create_db ? NULL : u.dbname, u.port,
                           u.socket[0] ? u.socket : NULL, 0)
        == NULL)
    {
        if (u.port) {
            snprintf(port, sizeof(port), ":%u", u.port);
        }
        /* the URL without its password */
        parleyctl_fail("cannot connect to mysql://%s@%s%s%s%s/%s%s%s: %s%s",
                       u.user, strchr(u.host, ':') ? "[" : "", u.host,
                       strchr(u.host, ':') ? "]" : "", port, u.dbname,
                       u.socket[0] ? "?socket=" : "", u.socket,
                       parleyctl_db_error(db),
                       mysql_errno(db) == ER_BAD_DB_ERROR
                           ? " (parleyctl migrate --create-db creates it)"
                           : "");
        mysql_close(db);
        return NULL;
    }

    if (create_db) {
        parleyctl_sql_init(&sql, db);
        parleyctl_sql_raw(&sql, "CREATE DATABASE IF NOT EXISTS `");
        parleyctl_sql_raw(&sql, u.dbname); /* [A-Za-z0-9_-] only */
        parleyctl_sql_raw(&sql, "` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin");
        if (parleyctl_exec(db, sql.data, sql.len, "create database") != 0) {
            parleyctl_sql_free(&sql);
            mysql_close(db);
            return NULL;
        }
        parleyctl_sql_free(&sql);

        if (mysql_select_db(db, u.dbname) != 0) {
            parleyctl_fail("use %s: %s", u.dbname, parleyctl_db_error(db));
            mysql_close(db);
            return NULL;
        }
    }

    /* DATETIME columns hold UTC */
    if (parleyctl_exec(db, set_utc, sizeof(set_utc) - 1, "set time zone") != 0)
    {
        mysql_close(db);
        return NULL;
    }

    return db;
}

unsigned parleyctl_exec(MYSQL *db, const char *sql, size_t len,
                        const char *what)
{
    MYSQL_RES *res;
    unsigned   err;

    if (mysql_real_query(db, sql, (unsigned long) len) != 0) {
        goto failed;
    }

    /* a statement with a result (SELECT, SHOW) must be drained */
    res = mysql_store_result(db);
    if (res) {
        mysql_free_result(res);
    } else if (mysql_field_count(db) != 0) {
        goto failed;
    }

    return 0;

failed:
    err = mysql_errno(db);
    if (what) {
        parleyctl_fail("%s: %s", what, parleyctl_db_error(db));
    }
    return err ? err : CR_UNKNOWN_ERROR;
}

MYSQL_RES *parleyctl_select(MYSQL *db, const char *sql, const char *what)
{
    MYSQL_RES *res;

    if (mysql_real_query(db, sql, (unsigned long) strlen(sql)) != 0
        || (res = mysql_store_result(db)) == NULL)
    {
        parleyctl_fail("%s: %s", what, parleyctl_db_error(db));
        return NULL;
    }
    return res;
}

void parleyctl_sql_init(parleyctl_sql_t *sql, MYSQL *db)
{
    sql->db = db;
    sql->cap = 256;
    sql->len = 0;
    sql->data = parleyctl_alloc(sql->cap);
    sql->data[0] = '\0';
}

void parleyctl_sql_reset(parleyctl_sql_t *sql)
{
    sql->len = 0;
    sql->data[0] = '\0';
}

void parleyctl_sql_free(parleyctl_sql_t *sql)
{
    free(sql->data);
    sql->data = NULL;
    sql->len = sql->cap = 0;
}

static void reserve(parleyctl_sql_t *sql, size_t more)
{
    if (sql->len + more + 1 > sql->cap) {
        while (sql->len + more + 1 > sql->cap) {
            sql->cap *= 2;
        }
        sql->data = parleyctl_realloc(sql->data, sql->cap);
    }
}

void parleyctl_sql_raw(parleyctl_sql_t *sql, const char *text)
{
    size_t n = strlen(text);

    reserve(sql, n);
    memcpy(sql->data + sql->len, text, n + 1);
    sql->len += n;
}

void parleyctl_sql_str(parleyctl_sql_t *sql, const char *s, size_t len)
{
    unsigned long n;

    reserve(sql, 2 * len + 2);
    sql->data[sql->len++] = '\'';
    n = mysql_real_escape_string(sql->db, sql->data + sql->len, s,
                                 (unsigned long) len);
    if (n == (unsigned long) -1) {
        fputs("parleyctl: cannot escape a string for SQL\n", stderr);
        exit(PARLEYCTL_FAIL);
    }
    sql->len += n;
    sql->data[sql->len++] = '\'';
    sql->data[sql->len] = '\0';
}

void parleyctl_sql_u64(parleyctl_sql_t *sql, uint64_t v)
{
    char buf[24];

    snprintf(buf, sizeof(buf), "%llu", (unsigned long long) v);
    parleyctl_sql_raw(sql, buf);
}
