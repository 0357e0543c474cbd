/*
 * parleyctl entry point: global options, command dispatch, help, and the
 * small option parser every command shares.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parleyctl.h"

const char *parleyctl_db_url;

void parleyctl_print_usage(FILE *out)
{
    fputs(
        "usage: parleyctl [--db URL] COMMAND [OPTIONS]\n"
        "\n"
        "Operator tool for Parley: schema migrations, tenants and admin API "
        "keys.\n"
        "\n"
        "Commands:\n"
        "  migrate [--dir DIR] [--create-db]\n"
        "      Apply the pending migrations of DIR (default conf/migrations) "
        "in\n"
        "      version order and record them in schema_migrations. "
        "--create-db\n"
        "      creates the database first if it does not exist.\n"
        "  migrate status [--dir DIR]\n"
        "      List every version: applied, pending, changed (file differs "
        "from\n"
        "      what was applied) or missing (applied, no file). Exit 1 on "
        "changed\n"
        "      or missing.\n"
        "  tenant create --name NAME [--if-absent] [--label L] [--node N]\n"
        "      Create a tenant and its first admin API key; print\n"
        "      PARLEY_TENANT_ID=... and PARLEY_API_KEY=... (shell "
        "assignments;\n"
        "      the key is shown only this once). --if-absent: when a tenant\n"
        "      of that name exists, issue a new key for it instead of "
        "failing.\n"
        "  tenant list\n"
        "      Tenants with their status and active and revoked key counts.\n"
        "  tenant suspend --tenant ID | tenant activate --tenant ID\n"
        "      Refuse, or accept again, the tenant's keys and tokens (within "
        "the\n"
        "      API's parley_api_cache_ttl).\n"
        "  tenant delete --tenant ID [--grace SECONDS]\n"
        "      Suspend the tenant, wait SECONDS (default 5, the API's cache "
        "TTL),\n"
        "      then delete every row it has in every table, in batches, and "
        "the\n"
        "      tenant. Stopped half-way, run it again.\n"
        "  apikey create --tenant ID [--label L] [--node N]\n"
        "      Issue another admin API key; print PARLEY_API_KEY=...\n"
        "  apikey revoke --tenant ID --prefix PREFIX\n"
        "      Revoke the key whose first 11 characters are PREFIX.\n"
        "  apikey list --tenant ID\n"
        "      The tenant's keys: prefix, created, revoked, label (never the "
        "keys).\n"
        "\n"
        "Options:\n"
        "  --db URL   database, default $PARLEY_DB_URL:\n"
        "               mysql://user:password@host:port/dbname\n"
        "               mysql://user:password@localhost/dbname?socket=/path\n"
        "             (percent-encode reserved characters in the password; "
        "prefer\n"
        "             the environment variable, which ps does not show)\n"
        "  --node N   node id 0..1023 for new ids (default 1023, kept for "
        "tools)\n"
        "  --help     this text\n"
        "\n"
        "Exit status: 0 success, 1 failure, 2 usage error.\n",
        out);
}

int parleyctl_fail(const char *fmt, ...)
{
    va_list ap;

    fputs("parleyctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);

    return PARLEYCTL_FAIL;
}

int parleyctl_usage_error(const char *fmt, ...)
{
    va_list ap;

    fputs("parleyctl: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\n(parleyctl --help shows the commands)\n", stderr);

    return PARLEYCTL_USAGE;
}

void *parleyctl_alloc(size_t n)
{
    return parleyctl_realloc(NULL, n);
}

void *parleyctl_realloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (p == NULL) {
        fputs("parleyctl: out of memory\n", stderr);
        exit(PARLEYCTL_FAIL);
    }
    return p;
}

int parleyctl_opts(const char *cmd, int argc, char **argv,
                   const parleyctl_opt_t *opts)
{
    const parleyctl_opt_t *o;
    const char            *arg, *eq;
    size_t                 name_len;
    int                    i;

    for (i = 0; i < argc; i++) {
        arg = argv[i];

        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            parleyctl_print_usage(stdout);
            return -1;
        }

        if (strncmp(arg, "--", 2) != 0) {
            return parleyctl_usage_error("%s: unexpected argument \"%s\"", cmd,
                                         arg);
        }

        eq = strchr(arg, '=');
        name_len = eq ? (size_t) (eq - arg) : strlen(arg);

        if (name_len == 4 && strncmp(arg, "--db", 4) == 0) {
            if (eq) {
                parleyctl_db_url = eq + 1;
            } else if (i + 1 < argc) {
                parleyctl_db_url = argv[++i];
            } else {
                return parleyctl_usage_error("%s: --db needs a value", cmd);
            }
            continue;
        }

        for (o = opts; o->name; o++) {
            if (strlen(o->name) == name_len
                && strncmp(o->name, arg, name_len) == 0)
            {
                break;
            }
        }

        if (o->name == NULL) {
            return parleyctl_usage_error("%s: unknown option \"%.*s\"", cmd,
                                         (int) name_len, arg);
        }

        if (o->value == NULL) {
            if (eq) {
                return parleyctl_usage_error("%s: %s takes no value", cmd,
                                             o->name);
            }
            *o->flag = 1;
        } else if (eq) {
            *o->value = eq + 1;
        } else if (i + 1 < argc) {
            *o->value = argv[++i];
        } else {
            return parleyctl_usage_error("%s: %s needs a value", cmd, o->name);
        }
    }

    return 0;
}

int main(int argc, char **argv)
{
    int i = 1;

    /* global options before the command */
    while (i < argc && strncmp(argv[i], "--", 2) == 0) {
        if (strcmp(argv[i], "--help") == 0) {
            parleyctl_print_usage(stdout);
            return PARLEYCTL_OK;
        }
        if (strcmp(argv[i], "--db") == 0 && i + 1 < argc) {
            parleyctl_db_url = argv[i + 1];
            i += 2;
        } else if (strncmp(argv[i], "--db=", 5) == 0) {
            parleyctl_db_url = argv[i] + 5;
            i++;
        } else {
            return parleyctl_usage_error("unknown or incomplete option \"%s\"",
                                         argv[i]);
        }
    }

    if (i >= argc) {
        parleyctl_print_usage(stderr);
        return PARLEYCTL_USAGE;
    }

    if (strcmp(argv[i], "help") == 0 || strcmp(argv[i], "-h") == 0) {
        parleyctl_print_usage(stdout);
        return PARLEYCTL_OK;
    }
    if (strcmp(argv[i], "migrate") == 0) {
        return parleyctl_migrate(argc - i - 1, argv + i + 1);
    }
    if (strcmp(argv[i], "tenant") == 0) {
        return parleyctl_tenant(argc - i - 1, argv + i + 1);
    }
    if (strcmp(argv[i], "apikey") == 0) {
        return parleyctl_apikey(argc - i - 1, argv + i + 1);
    }

    return parleyctl_usage_error("unknown command \"%s\"", argv[i]);
}
